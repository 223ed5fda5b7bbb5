//! The pods every target's selector may pick, kept by one watch per operator
//! instead of a LIST per autoscaler and tick. Only what a tick reads is kept
//! of each pod, indexed by namespace and label, so a tick's look-up costs the
//! pods of one label, not every pod of the cluster.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, ResourceExt};

/// What a tick needs to know of one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub uid: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Being deleted, or finished (`Succeeded`, `Failed`): not counted at all.
    pub gone: bool,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// When it started (its creation time until the kubelet reports one).
    pub started: Option<Timestamp>,
    pub ip: Option<String>,
}

impl From<&Pod> for PodView {
    fn from(pod: &Pod) -> Self {
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
        PodView {
            uid: pod.metadata.uid.clone(),
            labels: pod.labels().clone(),
            gone: pod.metadata.deletion_timestamp.is_some()
                || phase == "Succeeded"
                || phase == "Failed",
            ready: status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
            started: status
                .and_then(|s| s.start_time.as_ref())
                .or(pod.metadata.creation_timestamp.as_ref())
                .map(|t| t.0),
            ip: status.and_then(|s| s.pod_ip.clone()),
        }
    }
}

type PodKey = (String, String);

/// The watched pods; empty and not ready until the watch's first list is in.
#[derive(Default)]
pub struct PodCache {
    inner: RwLock<Index>,
}

#[derive(Default)]
struct Index {
    ready: bool,
    pods: HashMap<PodKey, Arc<PodView>>,
    /// Pod names by namespace, label key and value.
    by_label: HashMap<(String, String, String), HashSet<String>>,
    /// Pods of the list in progress after a (re)start of the watch.
    listing: Option<Vec<(PodKey, PodView)>>,
}

impl PodCache {
    /// Keeps the cache up to date with `api`'s pods until the returned task is
    /// aborted; what an earlier watch left is forgotten first.
    pub fn watch(self: &Arc<Self>, api: Api<Pod>) -> tokio::task::JoinHandle<()> {
        *self.inner.write().expect("pod cache lock") = Index::default();
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default().any_semantic())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => cache.apply(event),
                    Err(e) => {
                        // Until the watch lists again, ticks list the pods themselves.
                        cache.inner.write().expect("pod cache lock").ready = false;
                        tracing::warn!(error = %e, "watching pods failed; retrying");
                    }
                }
            }
        })
    }

    fn apply(&self, event: Event<Pod>) {
        let mut index = self.inner.write().expect("pod cache lock");
        match event {
            Event::Init => index.listing = Some(Vec::new()),
            Event::InitApply(pod) => {
                let entry = (key_of(&pod), PodView::from(&pod));
                index.listing.get_or_insert_with(Vec::new).push(entry);
            }
            Event::InitDone => {
                let listed = index.listing.take().unwrap_or_default();
                index.pods.clear();
                index.by_label.clear();
                for (key, view) in listed {
                    index.insert(key, view);
                }
                index.ready = true;
            }
            Event::Apply(pod) => {
                let key = key_of(&pod);
                index.remove(&key);
                index.insert(key, PodView::from(&pod));
            }
            Event::Delete(pod) => {
                index.remove(&key_of(&pod));
            }
        }
    }

    /// The pods of `namespace` that `selector` (in query form, as a scale subresource
    /// reports it) picks; none while the watch has not listed, or for a selector this
    /// cache cannot evaluate, so the caller lists them itself.
    pub fn select(&self, namespace: &str, selector: &str) -> Option<Vec<Arc<PodView>>> {
        let requirements = parse_selector(selector)?;
        let index = self.inner.read().expect("pod cache lock");
        if !index.ready {
            return None;
        }
        // The smallest set of names an equality requirement allows (none when no pod has
        // that label); a selector without one scans the namespace.
        let narrowest = requirements
            .iter()
            .filter_map(|r| match r {
                Requirement::In(k, values) if values.len() == 1 => Some(index.by_label.get(&(
                    namespace.to_string(),
                    k.clone(),
                    values[0].clone(),
                ))),
                _ => None,
            })
            .min_by_key(|names| names.map_or(0, HashSet::len));
        let matches = |view: &PodView| requirements.iter().all(|r| r.matches(&view.labels));
        let picked = match narrowest {
            Some(names) => names
                .into_iter()
                .flatten()
                .filter_map(|name| index.pods.get(&(namespace.to_string(), name.clone())))
                .filter(|view| matches(view))
                .cloned()
                .collect(),
            None => index
                .pods
                .iter()
                .filter(|((ns, _), view)| ns == namespace && matches(view))
                .map(|(_, view)| Arc::clone(view))
                .collect(),
        };
        Some(picked)
    }
}

impl Index {
    fn insert(&mut self, key: PodKey, view: PodView) {
        for (k, v) in &view.labels {
            self.by_label
                .entry((key.0.clone(), k.clone(), v.clone()))
                .or_default()
                .insert(key.1.clone());
        }
        self.pods.insert(key, Arc::new(view));
    }

    fn remove(&mut self, key: &PodKey) {
        let Some(view) = self.pods.remove(key) else {
            return;
        };
        for (k, v) in &view.labels {
            let label = (key.0.clone(), k.clone(), v.clone());
            if let Some(names) = self.by_label.get_mut(&label) {
                names.remove(&key.1);
                if names.is_empty() {
                    self.by_label.remove(&label);
                }
            }
        }
    }
}

fn key_of(pod: &Pod) -> PodKey {
    (pod.namespace().unwrap_or_default(), pod.name_any())
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// Parses a label selector in its query form (`a=b,c!=d,e in (f,g),h notin (i),j,!k`);
/// none for anything else, which the API server is left to judge.
fn parse_selector(selector: &str) -> Option<Vec<Requirement>> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1)?,
            ',' if depth == 0 => {
                parts.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&selector[start..]);
    let word = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && !s.contains(|c: char| c.is_whitespace() || "=!(),".contains(c)))
            .then(|| s.to_string())
    };
    let set = |s: &str| -> Option<Vec<String>> {
        let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
        inner.split(',').map(word).collect()
    };
    parts
        .into_iter()
        .map(|part| {
            let part = part.trim();
            if let Some((k, v)) = part.split_once("!=") {
                Some(Requirement::NotIn(word(k)?, vec![word(v)?]))
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Some(Requirement::In(word(k)?, vec![word(v)?]))
            } else if let Some((k, vs)) = part.split_once(" notin ") {
                Some(Requirement::NotIn(word(k)?, set(vs)?))
            } else if let Some((k, vs)) = part.split_once(" in ") {
                Some(Requirement::In(word(k)?, set(vs)?))
            } else if let Some(k) = part.strip_prefix('!') {
                Some(Requirement::DoesNotExist(word(k)?))
            } else {
                Some(Requirement::Exists(word(part)?))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn picks(selector: &str, pairs: &[(&str, &str)]) -> bool {
        let requirements = parse_selector(selector).expect("parses");
        requirements.iter().all(|r| r.matches(&labels(pairs)))
    }

    #[test]
    fn selectors_in_query_form_pick_what_the_api_server_would() {
        let web = [("app", "web"), ("tier", "front")];
        assert!(picks("app=web", &web));
        assert!(picks("app==web,tier", &web));
        assert!(!picks("app=api", &web));
        assert!(picks("app in (api, web),tier!=back", &web));
        assert!(!picks("tier notin (front)", &web));
        assert!(picks("!canary", &web));
        assert!(!picks("!tier", &web));
        assert!(picks("app=web,canary notin (true)", &web));
        for bad in ["app=(web", "app in web", "a b=c", "=x", "app in (a,(b))"] {
            assert_eq!(parse_selector(bad), None, "{bad}");
        }
    }

    fn pod(ns: &str, name: &str, app: &str, ready: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}"),
                         "labels": {"app": app}},
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        }))
        .unwrap()
    }

    fn names(cache: &PodCache, ns: &str, selector: &str) -> Option<Vec<String>> {
        cache.select(ns, selector).map(|views| {
            let mut n: Vec<String> = views.iter().filter_map(|v| v.uid.clone()).collect();
            n.sort();
            n
        })
    }

    #[test]
    fn the_cache_follows_the_watch_and_answers_only_once_listed() {
        let cache = PodCache::default();
        cache.apply(Event::Init);
        cache.apply(Event::InitApply(pod("a", "web-1", "web", true)));
        assert_eq!(names(&cache, "a", "app=web"), None, "not listed yet");
        cache.apply(Event::InitApply(pod("b", "web-1", "web", true)));
        cache.apply(Event::InitDone);
        assert_eq!(names(&cache, "a", "app=web").unwrap(), ["a-web-1"]);

        cache.apply(Event::Apply(pod("a", "web-2", "web", false)));
        cache.apply(Event::Apply(pod("a", "api-1", "api", true)));
        assert_eq!(
            names(&cache, "a", "app=web").unwrap(),
            ["a-web-1", "a-web-2"]
        );
        // A pod relabelled leaves its old label's set.
        cache.apply(Event::Apply(pod("a", "web-2", "api", false)));
        assert_eq!(names(&cache, "a", "app=web").unwrap(), ["a-web-1"]);
        assert_eq!(
            names(&cache, "a", "app in (web,api)").unwrap(),
            ["a-api-1", "a-web-1", "a-web-2"]
        );
        cache.apply(Event::Delete(pod("a", "web-1", "web", true)));
        assert_eq!(names(&cache, "a", "app=web").unwrap(), Vec::<String>::new());
        // A relist replaces everything.
        cache.apply(Event::Init);
        cache.apply(Event::InitApply(pod("a", "web-9", "web", true)));
        cache.apply(Event::InitDone);
        assert_eq!(names(&cache, "a", "app=web").unwrap(), ["a-web-9"]);
        assert_eq!(names(&cache, "b", "app=web").unwrap(), Vec::<String>::new());
        assert_eq!(
            names(&cache, "a", "app in (web"),
            None,
            "left to the API server"
        );
    }
}
