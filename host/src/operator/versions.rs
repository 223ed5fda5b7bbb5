//! The `resourceVersion` of every object of one kind, kept by a
//! metadata-only watch, so a cached read of an object can be trusted while
//! the object has not changed instead of being read again.
//!
//! Used for the target kinds' scales ([`super::scales`]) and for labelled
//! policy ConfigMaps. The index answers only once the watch has listed, and
//! never while the watch is failing: a caller then reads, as it would
//! without the index.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// Most objects of one kind whose versions are kept (about 150 bytes each);
/// past it, the index answers nothing for that kind.
pub const MAX_OBJECTS: usize = 50_000;

/// The versions of one kind's objects, as its watch last reported them.
#[derive(Default)]
pub struct Versions {
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

impl Versions {
    /// Whether the watch vouches that object `namespace`/`name` is still at
    /// `version`: false when it changed, is gone or unknown, or when the
    /// watch has not listed, is failing, stopped or overflowed.
    pub fn holds(&self, namespace: &str, name: &str, version: &str) -> bool {
        let index = self.inner.read().expect("versions lock");
        index.ready && !index.overflow && index.by_object.version(namespace, name) == Some(version)
    }

    /// Stops vouching for anything: the watch that kept the index has ended.
    pub fn stop(&self) {
        self.inner.write().expect("versions lock").ready = false;
    }

    fn apply<M: Resource>(&self, event: Event<M>) {
        let mut index = self.inner.write().expect("versions lock");
        let index = &mut *index;
        let version = |o: &M| o.resource_version().unwrap_or_default();
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

/// Keeps `versions` by watching the objects of `api` that `config` selects,
/// until the task is aborted; `what` names them in logs. An
/// `Api<PartialObjectMeta<_>>` asks for metadata only: no bodies are sent.
pub async fn watch<M>(api: Api<M>, config: watcher::Config, what: String, versions: Arc<Versions>)
where
    M: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut events = watcher(api, config.any_semantic())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => versions.apply(event),
            Err(e) => {
                let mut index = versions.inner.write().expect("versions lock");
                // Once per outage, and once for objects the operator may not list at all.
                if index.ready || !index.reported {
                    tracing::info!(%what, error = %e, "cannot watch these objects; reading them every time instead");
                    index.reported = true;
                }
                index.ready = false;
            }
        }
    }
}
