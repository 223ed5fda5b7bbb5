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

/// A scale as read, and what it was read of and when.
#[derive(Debug, Clone)]
pub struct ScaleRead {
    pub view: ScaleView,
    /// `group/plural`, namespace and name of the workload.
    object: (String, String, String),
    version: String,
    at: Instant,
}

impl ScaleRead {
    /// A read of `target`'s scale at `version`.
    pub fn new(target: &Target, view: ScaleView, version: String) -> Self {
        ScaleRead {
            view,
            object: identity(target),
            version,
            at: Instant::now(),
        }
    }
}

fn kind_of(resource: &ApiResource) -> String {
    format!("{}/{}", resource.group, resource.plural)
}

fn identity(target: &Target) -> (String, String, String) {
    (
        kind_of(target.resource()),
        target.namespace().to_string(),
        target.name().to_string(),
    )
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
    by_object: HashMap<(String, String), String>,
    listing: Option<HashMap<(String, String), String>>,
}

impl ScaleWatch {
    /// Watches nothing until a target's kind is first asked about.
    pub fn new(client: Client, namespace: Option<String>) -> Self {
        ScaleWatch {
            client,
            namespace,
            kinds: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// The scale `last` read of `target`, when the workload has not changed since.
    pub fn unchanged(&self, target: &Target, last: Option<&ScaleRead>) -> Option<ScaleView> {
        let last = last?;
        let versions = self
            .kinds
            .lock()
            .expect("scale watch kinds lock")
            .get(&kind_of(target.resource()))
            .cloned()?;
        if last.object != identity(target) || last.at.elapsed() >= MAX_AGE {
            return None;
        }
        let index = versions.inner.read().expect("scale versions lock");
        if !index.ready || index.overflow {
            return None;
        }
        let now = index
            .by_object
            .get(&(target.namespace().to_string(), target.name().to_string()))?;
        (*now == last.version).then(|| last.view.clone())
    }

    /// Notes that `target`'s scale was read: its kind is watched from now on.
    /// Only a kind whose scale was read is ever watched, so a spec naming any
    /// other kind (ConfigMaps, pods) never makes the operator watch it.
    pub fn read(&self, target: &Target) {
        let resource = target.resource();
        let key = kind_of(resource);
        let mut kinds = self.kinds.lock().expect("scale watch kinds lock");
        if kinds.contains_key(&key) {
            return;
        }
        let versions = Arc::new(Versions::default());
        kinds.insert(key.clone(), Arc::clone(&versions));
        let api: Api<PartialObjectMeta<DynamicObject>> = match &self.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, resource),
            None => Api::all_with(self.client.clone(), resource),
        };
        let task = tokio::spawn(watch(api, key, versions));
        self.tasks
            .lock()
            .expect("scale watch tasks lock")
            .push(task);
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
        let key = |o: &PartialObjectMeta<DynamicObject>| {
            (o.namespace().unwrap_or_default(), o.name_any())
        };
        let version =
            |o: &PartialObjectMeta<DynamicObject>| o.resource_version().unwrap_or_default();
        match event {
            Event::Init => index.listing = Some(HashMap::new()),
            Event::InitApply(o) => {
                let listing = index.listing.get_or_insert_with(HashMap::new);
                if listing.len() <= MAX_OBJECTS {
                    listing.insert(key(&o), version(&o));
                }
            }
            Event::InitDone => {
                let listed = index.listing.take().unwrap_or_default();
                index.overflow = listed.len() > MAX_OBJECTS;
                index.by_object = if index.overflow {
                    HashMap::new()
                } else {
                    listed
                };
                index.ready = true;
            }
            Event::Apply(o) => {
                if !index.overflow {
                    index.by_object.insert(key(&o), version(&o));
                    if index.by_object.len() > MAX_OBJECTS {
                        index.overflow = true;
                        index.by_object = HashMap::new();
                    }
                }
            }
            Event::Delete(o) => {
                index.by_object.remove(&key(&o));
            }
        }
    }
}
