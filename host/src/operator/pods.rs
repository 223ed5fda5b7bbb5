//! The pods every target's selector may pick, kept by one watch per operator
//! instead of a LIST per autoscaler and tick. Only what a tick reads is kept
//! of each pod, indexed by namespace and label, so a tick's look-up costs the
//! pods of one label, not every pod of the cluster.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, ResourceExt};

/// Text shared between pods: namespaces, label keys and values, and a pod's
/// name between the index and its label sets.
type Text = Arc<str>;

/// A pod's labels, sorted by key; keys and values are interned, since the
/// pods of one workload (and most of a cluster) repeat them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Labels(Box<[(Text, Text)]>);

impl Labels {
    /// The value of label `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    fn iter(&self) -> impl Iterator<Item = &(Text, Text)> {
        self.0.iter()
    }
}

/// What a tick needs to know of one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub uid: Option<Box<str>>,
    pub labels: Labels,
    /// Being deleted, or finished (`Succeeded`, `Failed`): not counted at all.
    pub gone: bool,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// When it started (its creation time until the kubelet reports one).
    pub started: Option<Timestamp>,
    pub ip: Option<Box<str>>,
}

impl PodView {
    /// The view of `pod`, its labels' text taken from `strings`.
    fn of(pod: &Pod, strings: &mut Strings) -> Self {
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
        PodView {
            uid: pod.metadata.uid.as_deref().map(Box::from),
            // A BTreeMap iterates in key order, which `Labels::get` relies on.
            labels: Labels(
                pod.labels()
                    .iter()
                    .map(|(k, v)| (strings.get(k), strings.get(v)))
                    .collect(),
            ),
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
            ip: status.and_then(|s| s.pod_ip.as_deref()).map(Box::from),
        }
    }
}

impl From<&Pod> for PodView {
    fn from(pod: &Pod) -> Self {
        PodView::of(pod, &mut Strings::default())
    }
}

/// Interned text; an entry no pod holds any more is dropped once as many
/// entries were added since the last sweep as there are, so sweeps cost
/// amortized O(1) per pod.
#[derive(Default)]
struct Strings {
    set: HashSet<Text>,
    added: usize,
}

impl Strings {
    fn get(&mut self, s: &str) -> Text {
        if let Some(t) = self.set.get(s) {
            return Arc::clone(t);
        }
        self.added += 1;
        if self.added > self.set.len().max(1024) {
            self.set.retain(|t| Arc::strong_count(t) > 1);
            self.added = 0;
        }
        let t: Text = Arc::from(s);
        self.set.insert(Arc::clone(&t));
        t
    }

    /// The interned `s`, when some pod holds it.
    fn find(&self, s: &str) -> Option<&Text> {
        self.set.get(s)
    }
}

/// Namespace and name.
type PodKey = (Text, Text);

/// The watched pods; empty and not ready until the watch's first list is in.
#[derive(Default)]
pub struct PodCache {
    inner: RwLock<Index>,
}

#[derive(Default)]
struct Index {
    ready: bool,
    pods: HashMap<PodKey, Arc<PodView>>,
    /// Pods by namespace, label key and value, then name: a tick reads its
    /// pods from here without a second look-up per pod.
    by_label: HashMap<(Text, Text, Text), HashMap<Text, Arc<PodView>>>,
    /// Pods of the list in progress after a (re)start of the watch.
    listing: Option<Vec<(PodKey, PodView)>>,
    strings: Strings,
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
        let index = &mut *index;
        match event {
            Event::Init => index.listing = Some(Vec::new()),
            Event::InitApply(pod) => {
                let entry = (
                    key_of(&pod, &mut index.strings),
                    PodView::of(&pod, &mut index.strings),
                );
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
                let key = key_of(&pod, &mut index.strings);
                index.remove(&key);
                let view = PodView::of(&pod, &mut index.strings);
                index.insert(key, view);
            }
            Event::Delete(pod) => {
                let key = key_of(&pod, &mut index.strings);
                index.remove(&key);
            }
        }
    }

    /// The pods of `namespace` that `selector` picks; none while the watch has not
    /// listed, or for a selector this cache cannot evaluate, so the caller lists them
    /// itself.
    pub fn select(&self, namespace: &str, selector: &Selector) -> Option<Vec<Arc<PodView>>> {
        let requirements = selector.requirements.as_deref()?;
        let index = self.inner.read().expect("pod cache lock");
        if !index.ready {
            return None;
        }
        let Some(ns) = index.strings.find(namespace) else {
            // No pod was ever seen in this namespace.
            return Some(Vec::new());
        };
        // The smallest set of pods an equality requirement allows (none when no pod has
        // that label); a selector without one scans the namespace.
        let label = |k: &str, v: &str| {
            let key = (
                Arc::clone(ns),
                Arc::clone(index.strings.find(k)?),
                Arc::clone(index.strings.find(v)?),
            );
            index.by_label.get(&key)
        };
        let narrowest = requirements
            .iter()
            .filter_map(|r| match r {
                Requirement::In(k, values) if values.len() == 1 => Some(label(k, &values[0])),
                _ => None,
            })
            .min_by_key(|pods| pods.map_or(0, HashMap::len));
        let matches = |view: &PodView| requirements.iter().all(|r| r.matches(&view.labels));
        let picked = match narrowest {
            Some(pods) => pods
                .into_iter()
                .flat_map(HashMap::values)
                .filter(|view| matches(view))
                .cloned()
                .collect(),
            None => index
                .pods
                .iter()
                .filter(|((n, _), view)| **n == *namespace && matches(view))
                .map(|(_, view)| Arc::clone(view))
                .collect(),
        };
        Some(picked)
    }
}

impl Index {
    fn insert(&mut self, key: PodKey, view: PodView) {
        let view = Arc::new(view);
        for (k, v) in view.labels.iter() {
            self.by_label
                .entry((Arc::clone(&key.0), Arc::clone(k), Arc::clone(v)))
                .or_default()
                .insert(Arc::clone(&key.1), Arc::clone(&view));
        }
        self.pods.insert(key, view);
    }

    fn remove(&mut self, key: &PodKey) {
        let Some(view) = self.pods.remove(key) else {
            return;
        };
        for (k, v) in view.labels.iter() {
            let label = (Arc::clone(&key.0), Arc::clone(k), Arc::clone(v));
            if let Some(pods) = self.by_label.get_mut(&label) {
                pods.remove(&key.1);
                if pods.is_empty() {
                    self.by_label.remove(&label);
                }
            }
        }
    }
}

/// The pod's namespace (interned) and name (its own: no two pods share one).
fn key_of(pod: &Pod, strings: &mut Strings) -> PodKey {
    (
        strings.get(pod.metadata.namespace.as_deref().unwrap_or_default()),
        Arc::from(pod.metadata.name.as_deref().unwrap_or_default()),
    )
}

/// A label selector in its query form, as a scale subresource reports it,
/// parsed once for the ticks that reuse the scale read.
#[derive(Debug, PartialEq)]
pub struct Selector {
    text: String,
    /// None for a selector this cache cannot evaluate (the API server judges it).
    requirements: Option<Vec<Requirement>>,
}

impl Selector {
    /// The selector `text` says.
    pub fn parse(text: String) -> Self {
        Selector {
            requirements: parse_selector(&text),
            text,
        }
    }

    /// The selector as the API server takes it.
    pub fn as_str(&self) -> &str {
        &self.text
    }
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
    fn matches(&self, labels: &Labels) -> bool {
        let has = |vs: &[String], v: &str| vs.iter().any(|x| x == v);
        match self {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| has(vs, v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !has(vs, v)),
            Requirement::Exists(k) => labels.get(k).is_some(),
            Requirement::DoesNotExist(k) => labels.get(k).is_none(),
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

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut sorted = pairs.to_vec();
        sorted.sort();
        Labels(
            sorted
                .iter()
                .map(|(k, v)| (Text::from(*k), Text::from(*v)))
                .collect(),
        )
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
        cache
            .select(ns, &Selector::parse(selector.into()))
            .map(|views| {
                let mut n: Vec<String> = views
                    .iter()
                    .filter_map(|v| v.uid.as_deref().map(String::from))
                    .collect();
                n.sort();
                n
            })
    }

    #[test]
    fn pods_share_their_label_text_and_text_no_pod_holds_is_let_go() {
        let cache = PodCache::default();
        cache.apply(Event::Init);
        for i in 0..100 {
            cache.apply(Event::InitApply(pod("a", &format!("web-{i}"), "web", true)));
        }
        cache.apply(Event::InitDone);
        let views = cache
            .select("a", &Selector::parse("app=web".into()))
            .unwrap();
        assert_eq!(views.len(), 100);
        assert!(Arc::ptr_eq(
            &views[0].labels.0[0].1,
            &views[99].labels.0[0].1
        ));
        drop(views);
        for i in 0..100 {
            cache.apply(Event::Delete(pod("a", &format!("web-{i}"), "web", true)));
        }
        // Enough new text to sweep: every pod of its own app.
        for i in 0..3000 {
            cache.apply(Event::Apply(pod(
                "b",
                &format!("api-{i}"),
                &format!("api-{i}"),
                true,
            )));
        }
        {
            let index = cache.inner.read().unwrap();
            assert!(index.strings.find("web").is_none(), "no pod holds `web`");
            assert!(index.strings.find("a").is_none(), "no pod is in `a`");
            assert!(index.strings.find("api-2999").is_some());
            assert!(
                index.strings.set.len() < 3000 + 1100,
                "{}",
                index.strings.set.len()
            );
        }
        assert_eq!(names(&cache, "a", "app=web").unwrap(), Vec::<String>::new());
        assert_eq!(names(&cache, "b", "app=api-7").unwrap(), ["b-api-7"]);
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
        // A pod's new state replaces the old under every label it has.
        cache.apply(Event::Apply(pod("a", "web-1", "web", false)));
        let web = cache
            .select("a", &Selector::parse("app=web".into()))
            .unwrap();
        assert!(web.iter().all(|v| !v.ready), "{web:?}");
        cache.apply(Event::Apply(pod("a", "web-1", "web", true)));
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
