//! The test API server's storage: objects, a global resourceVersion, the
//! watch history (compactable), and the semantics of each write.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{json, Map, Value};

/// A served resource type.
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    /// Has a `status` subresource: writes to the object ignore `status`.
    pub status: bool,
    /// Has a `scale` subresource.
    pub scale: bool,
    /// The scale's selector is read from `status.selector` (a custom resource's
    /// `labelSelectorPath`, as Argo Rollouts declares it), not from `spec.selector`.
    pub selector_in_status: bool,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

const fn res(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    status: bool,
    scale: bool,
) -> Resource {
    Resource {
        group,
        version,
        plural,
        kind,
        status,
        scale,
        selector_in_status: false,
    }
}

/// Everything the server serves.
pub static RESOURCES: &[Resource] = &[
    res("", "v1", "pods", "Pod", true, false),
    res("", "v1", "configmaps", "ConfigMap", false, false),
    res("apps", "v1", "deployments", "Deployment", true, true),
    res("apps", "v1", "statefulsets", "StatefulSet", true, true),
    // A custom resource with a `scale` subresource, shaped like Argo Rollouts' `Rollout`.
    Resource {
        selector_in_status: true,
        ..res("argoproj.io", "v1alpha1", "rollouts", "Rollout", true, true)
    },
    res(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
        false,
    ),
    res("coordination.k8s.io", "v1", "leases", "Lease", false, false),
    res("events.k8s.io", "v1", "events", "Event", false, false),
    res(
        "wasmautoscaler.dev",
        "v1alpha1",
        "wasmautoscalers",
        "WasmAutoscaler",
        true,
        false,
    ),
    res("", "v1", "secrets", "Secret", false, false),
    res(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        false,
        false,
    ),
];

/// A change, as a watch reports it.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub version: u64,
    pub type_: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub namespace: String,
    pub object: Value,
    /// For a change of the object's labels, the object before it: a watch
    /// with a label selector sees the object arrive or leave its selection.
    pub relabelled: Option<Value>,
}

impl WatchEvent {
    pub fn to_json(&self) -> Value {
        json!({"type": self.type_, "object": self.object})
    }

    /// The event as a watch with `selector` sees it, if at all. As the real
    /// API server's watch cache does, a change that moves the object into the
    /// selection is an ADDED, and one that moves it out a DELETED of the
    /// object as it was (at the change's version).
    pub fn through(&self, selector: Option<&str>) -> Option<Value> {
        let Some(selector) = selector else {
            return Some(self.to_json());
        };
        let now = selector_matches(selector, &self.object);
        let before = self
            .relabelled
            .as_ref()
            .map_or(now, |o| selector_matches(selector, o));
        match (before, now) {
            (true, true) => Some(self.to_json()),
            (false, true) => Some(json!({"type": "ADDED", "object": self.object})),
            (true, false) => {
                let mut gone = self
                    .relabelled
                    .clone()
                    .expect("only a relabelled object left");
                gone["metadata"]["resourceVersion"] = json!(self.version.to_string());
                Some(json!({"type": "DELETED", "object": gone}))
            }
            (false, false) => None,
        }
    }
}

/// A refused request.
#[derive(Debug)]
pub struct Error {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl Error {
    pub fn not_found(res: &Resource, name: &str) -> Self {
        Error {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{name}\" not found", res.plural),
        }
    }
    pub fn bad_request(message: &str) -> Self {
        Error {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
        }
    }
    pub fn method() -> Self {
        Error {
            code: 405,
            reason: "MethodNotAllowed",
            message: "method not allowed".into(),
        }
    }
    fn conflict(res: &Resource, name: &str) -> Self {
        Error {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                res.plural
            ),
        }
    }
}

type Key = (&'static str, &'static str, String, String);

#[derive(Default)]
pub struct Store {
    version: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<WatchEvent>,
    /// Watches from versions at or below this are gone (410).
    compacted: u64,
    pending: Vec<WatchEvent>,
    uids: u64,
}

fn key(res: &Resource, ns: &str, name: &str) -> Key {
    (res.group, res.plural, ns.to_string(), name.to_string())
}

fn now_text(offset: Duration) -> String {
    let t = Timestamp::now()
        .checked_sub(SignedDuration::try_from(offset).unwrap_or_default())
        .unwrap_or_else(|_| Timestamp::now());
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Store {
    /// The latest resourceVersion.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn get(&self, res: &Resource, ns: &str, name: &str) -> Option<Value> {
        self.objects.get(&key(res, ns, name)).cloned()
    }

    pub fn list(&self, res: &Resource, ns: Option<&str>, selector: Option<&str>) -> Vec<Value> {
        // The keys are ordered by resource, then namespace: only that range is read.
        self.objects
            .range(key(res, ns.unwrap_or(""), "")..)
            .take_while(|((g, p, n, _), _)| {
                *g == res.group && *p == res.plural && ns.is_none_or(|ns| ns == n)
            })
            .filter(|(_, o)| selector.is_none_or(|s| selector_matches(s, o)))
            .map(|(_, o)| o.clone())
            .collect()
    }

    pub fn create(
        &mut self,
        res: &'static Resource,
        ns: &str,
        mut object: Value,
    ) -> Result<Value, Error> {
        let name = object["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::bad_request("metadata.name is required"))?
            .to_string();
        if self.objects.contains_key(&key(res, ns, &name)) {
            return Err(Error {
                code: 409,
                reason: "AlreadyExists",
                message: format!("{} \"{name}\" already exists", res.plural),
            });
        }
        self.uids += 1;
        object["apiVersion"] = json!(res.api_version());
        object["kind"] = json!(res.kind);
        let meta = &mut object["metadata"];
        meta["namespace"] = json!(ns);
        meta["uid"] = json!(format!("uid-{}", self.uids));
        meta["generation"] = json!(1);
        meta["creationTimestamp"] = json!(now_text(Duration::ZERO));
        Ok(self.write(res, ns, &name, object, "ADDED"))
    }

    pub fn replace(
        &mut self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        mut object: Value,
    ) -> Result<Value, Error> {
        let current = self
            .get(res, ns, name)
            .ok_or_else(|| Error::not_found(res, name))?;
        if let Some(rv) = object["metadata"]["resourceVersion"].as_str() {
            if rv
                != current["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
            {
                return Err(Error::conflict(res, name));
            }
        }
        for field in [
            "uid",
            "creationTimestamp",
            "generation",
            "namespace",
            "name",
        ] {
            object["metadata"][field] = current["metadata"][field].clone();
        }
        object["apiVersion"] = json!(res.api_version());
        object["kind"] = json!(res.kind);
        if res.status {
            object["status"] = current["status"].clone();
        }
        bump_generation(&current, &mut object);
        Ok(self.write(res, ns, name, object, "MODIFIED"))
    }

    /// A JSON merge patch (RFC 7386) of the object, or of its status alone.
    pub fn patch(
        &mut self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        patch: &Value,
        sub: Option<&str>,
    ) -> Result<Value, Error> {
        let current = self
            .get(res, ns, name)
            .ok_or_else(|| Error::not_found(res, name))?;
        if let Some(rv) = patch["metadata"]["resourceVersion"].as_str() {
            if rv
                != current["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
            {
                return Err(Error::conflict(res, name));
            }
        }
        let mut object = current.clone();
        match sub {
            Some("status") => merge(&mut object["status"], &patch["status"]),
            _ => {
                let mut patch = patch.clone();
                if let Some(p) = patch.as_object_mut() {
                    if res.status {
                        p.remove("status");
                    }
                    p.remove("apiVersion");
                    p.remove("kind");
                }
                merge(&mut object, &patch);
                bump_generation(&current, &mut object);
            }
        }
        Ok(self.write(res, ns, name, object, "MODIFIED"))
    }

    pub fn delete(&mut self, res: &'static Resource, ns: &str, name: &str) -> Result<Value, Error> {
        self.delete_if(res, ns, name, None)
    }

    /// Deletes an object only if it is still at `resource_version` (a delete's
    /// `preconditions`), `409 Conflict` otherwise.
    pub fn delete_if(
        &mut self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<Value, Error> {
        let current = self
            .objects
            .get(&key(res, ns, name))
            .ok_or_else(|| Error::not_found(res, name))?;
        if resource_version.is_some_and(|rv| current["metadata"]["resourceVersion"] != rv) {
            return Err(Error::conflict(res, name));
        }
        let object = self
            .objects
            .remove(&key(res, ns, name))
            .expect("present above");
        self.version += 1;
        let mut object = object;
        object["metadata"]["resourceVersion"] = json!(self.version.to_string());
        self.record(res, ns, object.clone(), "DELETED", None);
        Ok(object)
    }

    /// The `autoscaling/v1` Scale of a workload.
    pub fn scale(&self, res: &Resource, ns: &str, name: &str) -> Result<Value, Error> {
        if !res.scale {
            return Err(Error::not_found(res, name));
        }
        let w = self
            .get(res, ns, name)
            .ok_or_else(|| Error::not_found(res, name))?;
        let selector = if res.selector_in_status {
            w["status"]["selector"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        } else {
            match_labels(&w)
        };
        Ok(json!({
            "apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": name, "namespace": ns,
                         "resourceVersion": w["metadata"]["resourceVersion"],
                         "uid": w["metadata"]["uid"]},
            "spec": {"replicas": w["spec"]["replicas"].as_u64().unwrap_or(1)},
            "status": {"replicas": w["status"]["replicas"].as_u64().unwrap_or(0), "selector": selector},
        }))
    }

    /// Sets a workload's replicas through its scale subresource.
    pub fn set_scale(
        &mut self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        body: &Value,
    ) -> Result<Value, Error> {
        if !res.scale {
            return Err(Error::not_found(res, name));
        }
        let replicas = body["spec"]["replicas"]
            .as_u64()
            .ok_or_else(|| Error::bad_request("spec.replicas is required"))?;
        let rv = body["metadata"]["resourceVersion"].clone();
        self.patch(
            res,
            ns,
            name,
            &json!({"metadata": {"resourceVersion": rv}, "spec": {"replicas": replicas}}),
            None,
        )?;
        self.scale(res, ns, name)
    }

    /// Keeps a scalable workload's pods in line with its replicas, as its
    /// controller (ReplicaSet, StatefulSet, Rollout) and kubelet would; new pods
    /// started `age` ago and are Ready at once.
    pub fn reconcile_pods(
        &mut self,
        deploy_res: &'static Resource,
        ns: &str,
        deployment: &Value,
        age: Duration,
    ) {
        let pods_res = RESOURCES.iter().find(|r| r.kind == "Pod").expect("served");
        let name = deployment["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let want = deployment["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
        let labels = deployment["spec"]["selector"]["matchLabels"].clone();
        let prefix = format!("{name}-");
        // Names only, from the ordered keys: a namespace may hold thousands of pods.
        let mut mine: Vec<String> = self
            .objects
            .range(key(pods_res, ns, &prefix)..)
            .map(|(k, _)| k)
            .take_while(|(g, p, n, pod)| {
                *g == pods_res.group && *p == pods_res.plural && n == ns && pod.starts_with(&prefix)
            })
            .map(|(.., pod)| pod.clone())
            .collect();
        mine.sort_by_key(|n| n[prefix.len()..].parse::<u64>().unwrap_or(0));
        while mine.len() > want {
            let pod = mine.pop().expect("non-empty");
            let _ = self.delete(pods_res, ns, &pod);
        }
        let mut next = mine
            .last()
            .and_then(|n| n[prefix.len()..].parse::<u64>().ok())
            .map_or(0, |n| n + 1);
        while mine.len() < want {
            let pod = format!("{prefix}{next}");
            next += 1;
            let started = now_text(age);
            let object = json!({
                "metadata": {"name": pod, "labels": labels},
                "spec": {"containers": [{"name": "app", "image": "app"}]},
                "status": {"phase": "Running", "podIP": "127.0.0.1", "startTime": started,
                           "conditions": [{"type": "Ready", "status": "True"}]},
            });
            if self.create(pods_res, ns, object).is_ok() {
                mine.push(pod);
            }
        }
        let mut status = json!({"status": {"replicas": want, "readyReplicas": want, "observedGeneration": deployment["metadata"]["generation"]}});
        if deploy_res.selector_in_status {
            status["status"]["selector"] = json!(match_labels(deployment));
        }
        let current = self.get(deploy_res, ns, &name);
        if current.is_some_and(|c| {
            c["status"]["replicas"].as_u64() != Some(want as u64)
                || c["status"]["selector"] != status["status"]["selector"]
                    && deploy_res.selector_in_status
        }) {
            let _ = self.patch(deploy_res, ns, &name, &status, Some("status"));
        }
    }

    /// The events of `res` after version `from`; `Err` when `from` was compacted away.
    pub fn since(&self, res: &Resource, from: u64) -> Result<Vec<WatchEvent>, String> {
        if from == 0 {
            // "Any version": the current objects, as additions.
            return Ok(self
                .list(res, None, None)
                .into_iter()
                .map(|o| WatchEvent {
                    version: self.version,
                    type_: "ADDED",
                    group: res.group,
                    resource: res.plural,
                    namespace: o["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .into(),
                    object: o,
                    relabelled: None,
                })
                .collect());
        }
        if from < self.compacted {
            return Err(format!(
                "too old resource version: {from} ({})",
                self.compacted
            ));
        }
        Ok(self
            .history
            .iter()
            .filter(|e| e.version > from && e.group == res.group && e.resource == res.plural)
            .cloned()
            .collect())
    }

    /// Forgets the history up to now.
    pub fn compact(&mut self) {
        self.compacted = self.version + 1;
        self.history.clear();
    }

    /// Events not yet broadcast to watches.
    pub fn take_pending(&mut self) -> Vec<WatchEvent> {
        std::mem::take(&mut self.pending)
    }

    fn write(
        &mut self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        mut object: Value,
        type_: &'static str,
    ) -> Value {
        if res.kind == "Secret" {
            fold_string_data(&mut object);
        }
        self.version += 1;
        object["metadata"]["resourceVersion"] = json!(self.version.to_string());
        let before = self.objects.insert(key(res, ns, name), object.clone());
        let relabelled = before.filter(|b| b["metadata"]["labels"] != object["metadata"]["labels"]);
        self.record(res, ns, object.clone(), type_, relabelled);
        object
    }

    fn record(
        &mut self,
        res: &'static Resource,
        ns: &str,
        object: Value,
        type_: &'static str,
        relabelled: Option<Value>,
    ) {
        let event = WatchEvent {
            version: self.version,
            type_,
            group: res.group,
            resource: res.plural,
            namespace: ns.to_string(),
            object,
            relabelled,
        };
        self.history.push(event.clone());
        self.pending.push(event);
    }
}

fn bump_generation(current: &Value, object: &mut Value) {
    let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
    let changed = current.get("spec") != object.get("spec");
    object["metadata"]["generation"] = json!(if changed { generation + 1 } else { generation });
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("made an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// A workload's `spec.selector.matchLabels` in query form (`app=web,tier=api`).
fn match_labels(workload: &Value) -> String {
    workload["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// Whether `object`'s labels satisfy an equality/existence label selector.
pub fn selector_matches(selector: &str, object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    selector
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .all(|req| {
            if let Some((k, v)) = req.split_once("!=") {
                labels[k.trim()].as_str() != Some(v.trim())
            } else if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
                labels[k.trim()].as_str() == Some(v.trim())
            } else if let Some(k) = req.strip_prefix('!') {
                labels.get(k.trim()).is_none()
            } else {
                labels.get(req).is_some()
            }
        })
}

/// A Secret's `stringData` goes into `data` (base64) on write; it is never stored.
fn fold_string_data(secret: &mut Value) {
    let Some(Value::Object(strings)) = secret.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    if !secret["data"].is_object() {
        secret["data"] = json!({});
    }
    for (key, value) in strings {
        let text = value.as_str().unwrap_or_default();
        secret["data"][key] = crate::fixtures::base64(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge(&mut t, &json!({"a": null, "b": {"c": 5}, "e": [1]}));
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}, "e": [1]}));
    }

    #[test]
    fn a_delete_with_a_stale_resource_version_is_refused() {
        let leases = RESOURCES.iter().find(|r| r.kind == "Lease").unwrap();
        let mut store = Store::default();
        let created = store
            .create(leases, "ns", json!({"metadata": {"name": "l"}}))
            .unwrap();
        let rv = created["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        store
            .patch(
                leases,
                "ns",
                "l",
                &json!({"spec": {"holderIdentity": "b"}}),
                None,
            )
            .unwrap();
        let stale = store.delete_if(leases, "ns", "l", Some(&rv)).unwrap_err();
        assert_eq!(stale.code, 409);
        let now = store.get(leases, "ns", "l").unwrap()["metadata"]["resourceVersion"].clone();
        assert!(store.delete_if(leases, "ns", "l", now.as_str()).is_ok());
        assert!(store.get(leases, "ns", "l").is_none());
    }

    #[test]
    fn a_relabelled_object_enters_and_leaves_a_selecting_watch() {
        let maps = RESOURCES.iter().find(|r| r.kind == "ConfigMap").unwrap();
        let mut store = Store::default();
        let labelled = json!({"metadata": {"name": "m", "labels": {"policy": "true"}}});
        store.create(maps, "ns", labelled).unwrap();
        let relabel = |store: &mut Store, labels: Value| {
            let patch = json!({"metadata": {"labels": labels}});
            store.patch(maps, "ns", "m", &patch, None).unwrap();
            store.take_pending().pop().unwrap()
        };
        let seen = |e: &WatchEvent| {
            let json = e.through(Some("policy"))?;
            Some((json["type"].as_str()?.to_string(), json["object"].clone()))
        };

        let dropped = relabel(&mut store, json!({"policy": null, "other": "x"}));
        assert_eq!(dropped.to_json()["type"], "MODIFIED", "unselected watches");
        let (type_, object) = seen(&dropped).expect("the selecting watch sees it leave");
        assert_eq!(type_, "DELETED");
        assert_eq!(object["metadata"]["labels"]["policy"], "true", "as it was");
        assert_eq!(
            object["metadata"]["resourceVersion"],
            json!(dropped.version.to_string()),
            "at the change's version"
        );

        let unseen = relabel(&mut store, json!({"other": "y"}));
        assert_eq!(
            seen(&unseen),
            None,
            "outside the selection before and after"
        );

        let back = relabel(&mut store, json!({"policy": "true"}));
        assert_eq!(seen(&back).unwrap().0, "ADDED");
        let data = json!({"data": {"k": "v"}});
        store.patch(maps, "ns", "m", &data, None).unwrap();
        let edit = store.take_pending().pop().unwrap();
        assert!(edit.relabelled.is_none(), "labels unchanged");
        assert_eq!(seen(&edit).unwrap().0, "MODIFIED");
    }

    #[test]
    fn selectors() {
        let o = json!({"metadata": {"labels": {"app": "web", "tier": "x"}}});
        assert!(selector_matches("app=web", &o));
        assert!(selector_matches("app==web,tier", &o));
        assert!(!selector_matches("app!=web", &o));
        assert!(!selector_matches("!tier", &o));
        assert!(!selector_matches("missing", &o));
    }
}
