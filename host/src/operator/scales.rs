//! Which targets changed since their scale was last read.
//!
//! A scale read carries the workload's `resourceVersion`. One metadata-only
//! watch per target kind keeps every object's current version, and a read
//! taken at the version the watch still reports is the scale now: a steady
//! tick then sends the API server nothing for its target. A read is taken
//! again when the workload changed, when its kind's watch has not listed yet
//! or is refused (no `list`/`watch` on the kind: the operator then reads the
//! scale every tick, as it always did), when the kind has more objects than
//! [`versions::MAX_OBJECTS`], and when the read is older than [`MAX_AGE`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::{Api, Client};

use super::target::{ScaleView, Target};
use super::versions::{self, Versions};

/// The oldest read reused, however quiet the watch: a watch that silently
/// stopped delivering costs at most this much staleness.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// A scale as read: of which workload, at which version, when, and the
/// versions its kind's watch keeps, to tell whether it still holds.
pub struct ScaleRead {
    view: ScaleView,
    resource: Arc<ApiResource>,
    namespace: String,
    name: String,
    version: String,
    at: Instant,
    versions: Arc<Versions>,
}

impl ScaleRead {
    /// The scale read, when it was read of `target` and the workload has not
    /// changed since (the watch reports the version it was read at).
    pub fn unchanged(&self, target: &Target<'_>) -> Option<ScaleView> {
        if !Arc::ptr_eq(&self.resource, target.resource()) && *self.resource != **target.resource()
            || self.namespace != target.namespace()
            || self.name != target.name()
            || self.at.elapsed() >= MAX_AGE
        {
            return None;
        }
        self.versions
            .holds(&self.namespace, &self.name, &self.version)
            .then(|| self.view.clone())
    }
}

/// The versions of the objects of every target kind seen, one watch per kind.
pub struct ScaleWatch {
    client: Client,
    /// The namespace the operator watches, or all of them.
    namespace: Option<String>,
    kinds: Mutex<HashMap<String, Arc<Versions>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for ScaleWatch {
    fn drop(&mut self) {
        for task in self.tasks.lock().expect("scale watch tasks lock").drain(..) {
            task.abort();
        }
        // A read still holding these versions must not trust them once unwatched.
        for versions in self.kinds.lock().expect("scale watch kinds lock").values() {
            versions.stop();
        }
    }
}

impl ScaleWatch {
    /// Watches nothing until a target's scale is first read.
    pub fn new(client: Client, namespace: Option<String>) -> Self {
        ScaleWatch {
            client,
            namespace,
            kinds: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Records that `target`'s scale was read as `view` at `version`; its kind
    /// is watched from now on. Only a kind whose scale was read is ever
    /// watched, so a spec naming any other kind (ConfigMaps, pods) never makes
    /// the operator watch it.
    pub fn read(&self, target: &Target<'_>, view: ScaleView, version: String) -> ScaleRead {
        ScaleRead {
            view,
            resource: Arc::clone(target.resource()),
            namespace: target.namespace().to_string(),
            name: target.name().to_string(),
            version,
            at: Instant::now(),
            versions: self.versions(target.resource()),
        }
    }

    /// The versions of `resource`'s objects, watched from the first call on.
    fn versions(&self, resource: &ApiResource) -> Arc<Versions> {
        let key = format!("{}/{}", resource.group, resource.plural);
        let mut kinds = self.kinds.lock().expect("scale watch kinds lock");
        if let Some(versions) = kinds.get(&key) {
            return Arc::clone(versions);
        }
        let versions = Arc::new(Versions::default());
        kinds.insert(key.clone(), Arc::clone(&versions));
        let api: Api<PartialObjectMeta<DynamicObject>> = match &self.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, resource),
            None => Api::all_with(self.client.clone(), resource),
        };
        let task = tokio::spawn(versions::watch(
            api,
            watcher::Config::default(),
            format!("target kind {key}"),
            Arc::clone(&versions),
        ));
        self.tasks
            .lock()
            .expect("scale watch tasks lock")
            .push(task);
        versions
    }
}
