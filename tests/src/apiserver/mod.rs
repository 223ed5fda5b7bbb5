//! An in-process Kubernetes API server for controller tests.
//!
//! It speaks the real HTTP REST and watch protocol for the resources the
//! operator uses — list with `resourceVersion`, streaming watches with
//! bookmarks, `409 Conflict` on a stale `resourceVersion`, `410 Gone` for a
//! watch from a compacted version, merge patches, the `status` and `scale`
//! subresources, discovery — so the real kube-rs client talks to it exactly
//! as to a cluster. A small built-in "ReplicaSet controller" keeps each
//! Deployment's pods in line with its replicas.
//!
//! Faults are injected per request ([`ApiServer::fail`]), and watches can be
//! dropped or their history compacted at will.

mod discovery;
pub mod rbac;
mod store;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::broadcast;

pub use store::WatchEvent;
use store::{Resource, Store, RESOURCES};

/// One injected failure: requests matching `method` and containing `path`
/// get `status` instead of being served, `times` times.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub times: u32,
}

/// A request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// The status it was answered with.
    pub status: u16,
    pub body: String,
    /// Who sent it: the bearer token's user (see [`ApiServer::client_as`]), empty without one.
    pub user: String,
    /// It asked for metadata only (`PartialObjectMetadata`).
    pub metadata_only: bool,
    /// When it arrived.
    pub at: std::time::Instant,
}

struct Shared {
    store: Mutex<Store>,
    events: broadcast::Sender<WatchEvent>,
    drop_watches: broadcast::Sender<()>,
    faults: Mutex<Vec<Fault>>,
    seen: Mutex<Vec<Seen>>,
    /// Pods made by the built-in ReplicaSet controller start this long ago,
    /// so tests choose whether new pods are warm.
    pod_age: Mutex<Duration>,
    /// When set, requests need a grant that allows them (403 otherwise).
    rbac: Mutex<Option<Vec<rbac::Grant>>>,
    /// How long each request waits before it is served, as on a loaded server.
    delay: Mutex<Duration>,
    /// Requests being served now (a watch until its response starts), and the most at once.
    in_flight: Mutex<(usize, usize)>,
}

/// A running test API server; stops when dropped.
pub struct ApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiServer {
    /// Starts a server on a loopback port.
    pub async fn start() -> Self {
        let (events, _) = broadcast::channel(4096);
        let (drop_watches, _) = broadcast::channel(16);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            events,
            drop_watches,
            faults: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            pod_age: Mutex::new(Duration::from_secs(3600)),
            rbac: Mutex::new(None),
            delay: Mutex::new(Duration::ZERO),
            in_flight: Mutex::new((0, 0)),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("test API server runs");
        });
        ApiServer { addr, shared, task }
    }

    /// A kubeconfig for a separate process (the operator binary) to reach this server.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters: [{{name: test, cluster: {{server: \"{}\"}}}}]\n\
             users: [{{name: operator, user: {{}}}}]\n\
             contexts: [{{name: test, context: {{cluster: test, user: operator, namespace: default}}}}]\n",
            self.url()
        )
    }

    /// The server's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client talking to this server, with `default` as its namespace.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("client for the test server")
    }

    /// A client that authenticates as `user` (a bearer token naming it), so the
    /// requests it sends are told apart in [`ApiServer::seen`].
    pub fn client_as(&self, user: &str) -> kube::Client {
        let mut config = self.config();
        config.headers.push((
            axum::http::header::AUTHORIZATION,
            format!("Bearer {user}").parse().expect("a header value"),
        ));
        kube::Client::try_from(config).expect("client for the test server")
    }

    /// The configuration [`ApiServer::client`] is built from.
    pub fn config(&self) -> kube::Config {
        let mut config = kube::Config::new(self.url().parse().expect("valid URL"));
        config.default_namespace = "default".into();
        config.read_timeout = Some(Duration::from_secs(30));
        config
    }

    /// Creates an object (JSON with apiVersion, kind, metadata.name and namespace).
    pub fn create(&self, object: Value) -> Value {
        let res = resource_of(&object);
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let created = self
            .shared
            .store
            .lock()
            .unwrap()
            .create(res, &ns, object)
            .expect("test fixture creates");
        self.after_write(res, &ns, &created);
        created
    }

    /// The object `kind/name` in `namespace`, if it exists.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let res = RESOURCES
            .iter()
            .find(|r| r.kind == kind)
            .expect("known kind");
        self.shared.store.lock().unwrap().get(res, namespace, name)
    }

    /// Condition `type_` of the `WasmAutoscaler` `name`: status, reason, message.
    pub fn condition(
        &self,
        namespace: &str,
        name: &str,
        type_: &str,
    ) -> Option<(String, String, String)> {
        let object = self.get("WasmAutoscaler", namespace, name)?;
        let c = object["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == type_)?
            .clone();
        Some((
            c["status"].as_str()?.to_string(),
            c["reason"].as_str()?.to_string(),
            c["message"].as_str()?.to_string(),
        ))
    }

    /// The reason and note of every Event about object `name` in `namespace`.
    pub fn events_about(&self, namespace: &str, name: &str) -> Vec<(String, String)> {
        self.list("Event", namespace)
            .iter()
            .filter(|e| e["regarding"]["name"] == name)
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or_default().to_string(),
                    e["note"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// All objects of `kind` in `namespace`.
    pub fn list(&self, kind: &str, namespace: &str) -> Vec<Value> {
        let res = RESOURCES
            .iter()
            .find(|r| r.kind == kind)
            .expect("known kind");
        self.shared
            .store
            .lock()
            .unwrap()
            .list(res, Some(namespace), None)
    }

    /// Changes an object as another client would (merge patch), e.g. a user editing a spec.
    pub fn patch(&self, kind: &str, namespace: &str, name: &str, patch: Value) -> Value {
        let res = RESOURCES
            .iter()
            .find(|r| r.kind == kind)
            .expect("known kind");
        let updated = self
            .shared
            .store
            .lock()
            .unwrap()
            .patch(res, namespace, name, &patch, None)
            .expect("test fixture patches");
        self.after_write(res, namespace, &updated);
        updated
    }

    /// Deletes an object.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let res = RESOURCES
            .iter()
            .find(|r| r.kind == kind)
            .expect("known kind");
        let _ = self
            .shared
            .store
            .lock()
            .unwrap()
            .delete(res, namespace, name);
        self.flush();
    }

    /// Answers the next `times` requests matching `method` and `path` with `status`.
    pub fn fail(&self, method: Method, path: &str, status: u16, times: u32) {
        self.shared.faults.lock().unwrap().push(Fault {
            method,
            path: path.into(),
            status,
            times,
        });
    }

    /// Closes every open watch connection.
    pub fn drop_watches(&self) {
        let _ = self.shared.drop_watches.send(());
    }

    /// Forgets the watch history up to now and closes every watch, so a
    /// client resuming from its last version gets `410 Gone`.
    pub fn compact(&self) {
        self.shared.store.lock().unwrap().compact();
        self.drop_watches();
    }

    /// Refuses, from now on, every request `grants` do not allow (as the
    /// operator's ServiceAccount would be refused). Objects made through this
    /// handle are not subject to it.
    pub fn enforce_rbac(&self, grants: Vec<rbac::Grant>) {
        *self.shared.rbac.lock().unwrap() = Some(grants);
    }

    /// Sets how long ago pods made from now on started.
    pub fn set_pod_age(&self, age: Duration) {
        *self.shared.pod_age.lock().unwrap() = age;
    }

    /// Makes every request wait `delay` before it is served.
    pub fn delay_requests(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap() = delay;
    }

    /// The most requests served at once so far.
    pub fn peak_in_flight(&self) -> usize {
        self.shared.in_flight.lock().unwrap().1
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The requests whose method is `method` and whose path contains `path`.
    pub fn seen_matching(&self, method: &Method, path: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == method && s.path.contains(path))
            .collect()
    }

    fn after_write(&self, res: &'static Resource, namespace: &str, object: &Value) {
        if res.scale {
            let age = *self.shared.pod_age.lock().unwrap();
            self.shared
                .store
                .lock()
                .unwrap()
                .reconcile_pods(res, namespace, object, age);
        }
        self.flush();
    }

    fn flush(&self) {
        flush(&self.shared);
    }
}

fn flush(shared: &Shared) {
    for event in shared.store.lock().unwrap().take_pending() {
        let _ = shared.events.send(event);
    }
}

fn resource_of(object: &Value) -> &'static Resource {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
        .unwrap_or_else(|| panic!("the test server does not serve {api_version} {kind}"))
}

/// Where a request points.
struct Target<'a> {
    res: &'static Resource,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    sub: Option<&'a str>,
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let at = std::time::Instant::now();
    let method = request.method().clone();
    let user = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    // Metadata-only reads (kube's `get_metadata`, metadata watches) say so in `Accept`.
    let metadata_only = request
        .headers()
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("as=PartialObjectMetadata"));
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let body = axum::body::to_bytes(request.into_body(), 16 << 20)
        .await
        .unwrap_or_default();
    let injected = {
        let mut faults = shared.faults.lock().unwrap();
        let hit = faults
            .iter_mut()
            .find(|f| f.times > 0 && f.method == method && path.contains(&f.path));
        hit.map(|f| {
            f.times -= 1;
            f.status
        })
    };
    {
        let mut in_flight = shared.in_flight.lock().unwrap();
        in_flight.0 += 1;
        in_flight.1 = in_flight.1.max(in_flight.0);
    }
    let delay = *shared.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (status, response) = match injected {
        Some(code) => {
            let r = status_response(code, "Injected", "injected fault");
            (code, r)
        }
        None => {
            let request = Incoming {
                method: &method,
                path: &path,
                query: &query,
                body: &body,
                metadata_only,
            };
            serve(&shared, &request).await
        }
    };
    shared.in_flight.lock().unwrap().0 -= 1;
    shared.seen.lock().unwrap().push(Seen {
        method,
        path,
        query,
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        user,
        metadata_only,
        at,
    });
    response
}

/// One request, as `serve` needs it.
struct Incoming<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a str,
    body: &'a Bytes,
    /// The client asked for `PartialObjectMetadata` (its `Accept` header).
    metadata_only: bool,
}

async fn serve(shared: &Arc<Shared>, request: &Incoming<'_>) -> (u16, Response) {
    let Incoming {
        method,
        path,
        query,
        body,
        metadata_only,
    } = *request;
    let params: BTreeMap<String, String> = url_params(query);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if path == "/version" {
        return ok(
            json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-wasm-autoscaler-test", "platform": "linux/amd64"}),
        );
    }
    let (group, version, rest) = match segments.as_slice() {
        ["api"] => return ok(discovery::core_versions()),
        ["apis"] => return ok(discovery::groups()),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return not_found(path),
    };
    if rest.is_empty() {
        return match discovery::resources(group, version) {
            Some(list) => ok(list),
            None => not_found(path),
        };
    }
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(*ns), rest),
        rest => (None, rest),
    };
    let Some(res) = RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == rest[0])
    else {
        return not_found(path);
    };
    let target = Target {
        res,
        namespace,
        name: rest.get(1).copied(),
        sub: rest.get(2).copied(),
    };
    if rest.len() > 3 {
        return not_found(path);
    }
    let watch = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    if let Some(grants) = shared.rbac.lock().unwrap().as_ref() {
        let verb = match (method, target.name) {
            (&Method::GET, None) if watch => "watch",
            (&Method::GET, None) => "list",
            (&Method::GET, _) => "get",
            (&Method::POST, _) => "create",
            (&Method::PUT, _) => "update",
            (&Method::PATCH, _) => "patch",
            (&Method::DELETE, _) => "delete",
            _ => "unknown",
        };
        let resource = match target.sub {
            Some(sub) => format!("{}/{sub}", res.plural),
            None => res.plural.to_string(),
        };
        if !rbac::allows(
            grants,
            target.namespace,
            group,
            &resource,
            verb,
            target.name,
        ) {
            let scope = match target.namespace {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".to_string(),
            };
            let message = format!(
                "forbidden: cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}"
            );
            return (403, status_response(403, "Forbidden", &message));
        }
    }
    match (method, target.name) {
        (&Method::GET, None) if watch => watch_response(shared, &target, &params, metadata_only),
        (&Method::GET, None) => {
            let store = shared.store.lock().unwrap();
            let items = store.list(
                res,
                target.namespace,
                params.get("labelSelector").map(String::as_str),
            );
            let (api_version, kind, items) = if metadata_only {
                let items = items.iter().map(partial_metadata).collect();
                (
                    META_API_VERSION.to_string(),
                    "PartialObjectMetadataList".to_string(),
                    items,
                )
            } else {
                (res.api_version(), format!("{}List", res.kind), items)
            };
            ok(json!({
                "apiVersion": api_version,
                "kind": kind,
                "metadata": {"resourceVersion": store.version().to_string()},
                "items": items,
            }))
        }
        (&Method::POST, None) => {
            let Some(ns) = target.namespace else {
                return bad_request("create needs a namespace");
            };
            let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
                return bad_request("body is not JSON");
            };
            object["metadata"]["namespace"] = json!(ns);
            let result = shared.store.lock().unwrap().create(res, ns, object);
            flush(shared);
            respond(result, 201)
        }
        (_, Some(name)) => object_request(shared, request, &target, name).await,
        _ => (
            405,
            status_response(405, "MethodNotAllowed", "method not allowed"),
        ),
    }
}

async fn object_request(
    shared: &Arc<Shared>,
    request: &Incoming<'_>,
    target: &Target<'_>,
    name: &str,
) -> (u16, Response) {
    let Incoming { method, body, .. } = *request;
    let res = target.res;
    let Some(ns) = target.namespace else {
        return bad_request("only namespaced objects are served");
    };
    let parsed = || serde_json::from_slice::<Value>(body);
    let result = {
        let mut store = shared.store.lock().unwrap();
        match (method, target.sub) {
            (&Method::GET, None) => store
                .get(res, ns, name)
                .map(|o| {
                    if request.metadata_only {
                        partial_metadata(&o)
                    } else {
                        o
                    }
                })
                .ok_or_else(|| store::Error::not_found(res, name)),
            (&Method::GET, Some("scale")) => store.scale(res, ns, name),
            (&Method::GET, Some("status")) => store
                .get(res, ns, name)
                .ok_or_else(|| store::Error::not_found(res, name)),
            (&Method::PUT, sub) => match parsed() {
                Ok(object) => match sub {
                    None => store.replace(res, ns, name, object),
                    Some("status") => store.patch(
                        res,
                        ns,
                        name,
                        &json!({"status": object["status"]}),
                        Some("status"),
                    ),
                    Some("scale") => store.set_scale(res, ns, name, &object),
                    Some(_) => Err(store::Error::not_found(res, name)),
                },
                Err(e) => Err(store::Error::bad_request(&e.to_string())),
            },
            (&Method::PATCH, sub) => match parsed() {
                Ok(patch) => match sub {
                    None => store.patch(res, ns, name, &patch, None),
                    Some("status") => store.patch(res, ns, name, &patch, Some("status")),
                    Some("scale") => store.set_scale(res, ns, name, &patch),
                    Some(_) => Err(store::Error::not_found(res, name)),
                },
                Err(e) => Err(store::Error::bad_request(&e.to_string())),
            },
            (&Method::DELETE, None) => {
                let options: Value = serde_json::from_slice(&body[..]).unwrap_or_default();
                let precondition = options["preconditions"]["resourceVersion"].as_str();
                store.delete_if(res, ns, name, precondition)
            }
            _ => Err(store::Error::method()),
        }
    };
    if method != Method::GET {
        if let Ok(object) = &result {
            let workload = if !res.scale || target.sub == Some("status") {
                None
            } else if target.sub == Some("scale") {
                shared.store.lock().unwrap().get(res, ns, name)
            } else {
                Some(object.clone())
            };
            if let Some(w) = workload {
                let age = *shared.pod_age.lock().unwrap();
                shared
                    .store
                    .lock()
                    .unwrap()
                    .reconcile_pods(res, ns, &w, age);
            }
        }
        flush(shared);
    }
    respond(result, 200)
}

fn watch_response(
    shared: &Arc<Shared>,
    target: &Target<'_>,
    params: &BTreeMap<String, String>,
    metadata_only: bool,
) -> (u16, Response) {
    let res = target.res;
    let namespace = target.namespace.map(str::to_string);
    let selector = params.get("labelSelector").cloned();
    let from: u64 = params
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(Duration::from_secs(300), Duration::from_secs);
    // Subscribe before reading the backlog so no event falls in between.
    let mut live = shared.events.subscribe();
    let mut dropped = shared.drop_watches.subscribe();
    let backlog = shared.store.lock().unwrap().since(res, from);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let seen = |e: &WatchEvent| {
            let ours = e.resource == res.plural
                && e.group == res.group
                && namespace.as_deref().is_none_or(|n| e.namespace == n);
            ours.then(|| e.through(selector.as_deref())).flatten()
        };
        let line = |mut v: Value| {
            if metadata_only && v["type"] != "ERROR" {
                v["object"] = partial_metadata(&v["object"]);
            }
            Bytes::from(format!("{v}\n"))
        };
        let backlog = match backlog {
            Ok(events) => events,
            Err(expired) => {
                let _ = tx
                    .send(line(
                        json!({"type": "ERROR", "object": status_body(410, "Expired", &expired)}),
                    ))
                    .await;
                return;
            }
        };
        let mut last = from;
        for (e, json) in backlog.iter().filter_map(|e| Some((e, seen(e)?))) {
            last = last.max(e.version);
            if tx.send(line(json)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                event = live.recv() => match event {
                    Ok(e) if e.version > last => {
                        if let Some(json) = seen(&e) {
                            last = e.version;
                            if tx.send(line(json)).await.is_err() { return; }
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    let version = shared.store.lock().unwrap().version();
                    let bookmark = json!({"type": "BOOKMARK", "object": {
                        "apiVersion": res.api_version(), "kind": res.kind,
                        "metadata": {"resourceVersion": version.to_string()}}});
                    if tx.send(line(bookmark)).await.is_err() { return; }
                }
                _ = dropped.recv() => return,
                _ = &mut deadline => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let response = Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .expect("watch response");
    (200, response)
}

fn url_params(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The group and version of `PartialObjectMetadata`.
const META_API_VERSION: &str = "meta.k8s.io/v1";

/// An object as a metadata-only request sees it.
fn partial_metadata(object: &Value) -> Value {
    json!({
        "apiVersion": META_API_VERSION,
        "kind": "PartialObjectMetadata",
        "metadata": object["metadata"],
    })
}

fn ok(v: Value) -> (u16, Response) {
    (200, (StatusCode::OK, axum::Json(v)).into_response())
}

fn respond(result: Result<Value, store::Error>, success: u16) -> (u16, Response) {
    match result {
        Ok(v) => (
            success,
            (StatusCode::from_u16(success).unwrap(), axum::Json(v)).into_response(),
        ),
        Err(e) => (e.code, status_response(e.code, e.reason, &e.message)),
    }
}

fn not_found(path: &str) -> (u16, Response) {
    (
        404,
        status_response(404, "NotFound", &format!("{path} is not served")),
    )
}

fn bad_request(message: &str) -> (u16, Response) {
    (400, status_response(400, "BadRequest", message))
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    })
}

fn status_response(code: u16, reason: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(status_body(code, reason, message)),
    )
        .into_response()
}
