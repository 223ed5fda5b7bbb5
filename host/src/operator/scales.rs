//! Which targets changed since their scale was last read.
//!
//! A scale read carries the workload's `resourceVersion`. One metadata-only
//! watch per target kind keeps every object's current version, and a read
//! taken at the version the watch still reports is the scale now: a steady
//! tick then sends the API server nothing for its target. A read is taken
//! again when the workload changed, when its kind's watch has not listed yet
//! or is refused (no `list`/`watch` on the kind: the operator then reads the
//! scale every tick, as it always did), when the kind has more objects than
//! [`MAX_OBJECTS`], and when the read is older than [`MAX_AGE`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};

use super::target::{ScaleView, Target};

/// The oldest read reused, however quiet the watch: a watch that silently
/// stopped delivering costs at most this much staleness.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// Most objects of one kind whose versions are kept (about 150 bytes each);
/// past it, that kind's scales are read every tick.
pub const MAX_OBJECTS: usize = 50_000;

/// A scale as read: of which workload, at which version, when, and the
/// versions its kind's watch keeps, to tell whether it still holds.
pub struct ScaleRead {
    view: ScaleView,
    resource: ApiResource,
    namespace: String,
    name: String,
    version: String,
    at: Instant,
    versions: Arc<Versions>,
}

impl ScaleRead {
    /// The scale read, when it was read of `target` and the workload has not
    /// changed since (the watch reports the version it was read at).
    pub fn unchanged(&self, target: &Target) -> Option<ScaleView> {
        if self.resource != *target.resource()
            || self.namespace != target.namespace()
            || self.name != target.name()
            || self.at.elapsed() >= MAX_AGE
        {
            return None;
        }
        let index = self.versions.inner.read().expect("scale versions lock");
        if !index.ready || index.overflow {
            return None;
        }
        let now = index.by_object.version(&self.namespace, &self.name)?;
        (now == self.version).then(|| self.view.clone())
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
            versions.inner.write().expect("scale versions lock").ready = false;
        }
    }
}

#[derive(Default)]
struct Versions {
    inner: RwLock<Index>,
}

#[derive(Default)]
struct Index {
    /// Listed, and every change since applied.
    ready: bool,
    /// More objects than [`MAX_OBJECTS`]: not kept.
    overflow: bool,
    /// A failure of the watch was logged.
    reported: bool,
    by_object: Objects,
    listing: Option<Objects>,
}

/// Versions by namespace and name, nested so a look-up borrows its keys.
#[derive(Default)]
struct Objects {
    by_namespace: HashMap<String, HashMap<String, String>>,
    len: usize,
}

impl Objects {
    fn version(&self, namespace: &str, name: &str) -> Option<&str> {
        self.by_namespace
            .get(namespace)?
            .get(name)
            .map(String::as_str)
    }

    fn insert(&mut self, namespace: String, name: String, version: String) {
        let names = self.by_namespace.entry(namespace).or_default();
        if names.insert(name, version).is_none() {
            self.len += 1;
        }
    }

    fn remove(&mut self, namespace: &str, name: &str) {
        let Some(names) = self.by_namespace.get_mut(namespace) else {
            return;
        };
        if names.remove(name).is_some() {
            self.len -= 1;
            if names.is_empty() {
                self.by_namespace.remove(namespace);
            }
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
    pub fn read(&self, target: &Target, view: ScaleView, version: String) -> ScaleRead {
        ScaleRead {
            view,
            resource: target.resource().clone(),
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
        let task = tokio::spawn(watch(api, key, Arc::clone(&versions)));
        self.tasks
            .lock()
            .expect("scale watch tasks lock")
            .push(task);
        versions
    }
}

async fn watch(api: Api<PartialObjectMeta<DynamicObject>>, kind: String, versions: Arc<Versions>) {
    let mut events = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => versions.apply(event),
            Err(e) => {
                let mut index = versions.inner.write().expect("scale versions lock");
                // Once per outage, and once for a kind the operator may not list at all.
                if index.ready || !index.reported {
                    tracing::info!(%kind, error = %e, "cannot watch this target kind; reading its scales every tick");
                    index.reported = true;
                }
                index.ready = false;
            }
        }
    }
}

impl Versions {
    fn apply(&self, event: Event<PartialObjectMeta<DynamicObject>>) {
        let mut index = self.inner.write().expect("scale versions lock");
        let index = &mut *index;
        let version =
            |o: &PartialObjectMeta<DynamicObject>| o.resource_version().unwrap_or_default();
        match event {
            Event::Init => index.listing = Some(Objects::default()),
            Event::InitApply(o) => {
                let listing = index.listing.get_or_insert_with(Objects::default);
                if listing.len <= MAX_OBJECTS {
                    listing.insert(o.namespace().unwrap_or_default(), o.name_any(), version(&o));
                }
            }
            Event::InitDone => {
                let listed = index.listing.take().unwrap_or_default();
                index.overflow = listed.len > MAX_OBJECTS;
                index.by_object = if index.overflow {
                    Objects::default()
                } else {
                    listed
                };
                index.ready = true;
            }
            Event::Apply(o) => {
                if !index.overflow {
                    let objects = &mut index.by_object;
                    objects.insert(o.namespace().unwrap_or_default(), o.name_any(), version(&o));
                    if objects.len > MAX_OBJECTS {
                        index.overflow = true;
                        index.by_object = Objects::default();
                    }
                }
            }
            Event::Delete(o) => {
                let namespace = o.namespace().unwrap_or_default();
                index.by_object.remove(&namespace, &o.name_any());
            }
        }
    }
}
