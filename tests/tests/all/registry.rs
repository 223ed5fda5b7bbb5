//! The `oci` policy source against a real registry (Debian's
//! `docker-registry`, distribution 2.8, on loopback): pushed with
//! `wasm-autoscaler push`'s code, pulled by digest with the operator's own
//! client, refused when it is a tag, too large, not what its digest says,
//! or beyond the egress rules; logins from a dockerconfigjson Secret; a
//! registry that is down; and a Python policy deployed this way through
//! the operator.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use serde_json::json;
use wasm_autoscaler::boundary::credentials::{registry_login, SecretSource};
use wasm_autoscaler::boundary::egress::EgressPolicy;
use wasm_autoscaler::bundled;
use wasm_autoscaler::operator::Settings;
use wasm_autoscaler::registry::{
    push, Login, Origin, PullError, Pulled, Pushed, Reference, Registry, RegistrySettings,
};
use wasm_autoscaler::runtime::MAX_COMPONENT_BYTES;
use wasm_autoscaler_tests::apiserver::ApiServer;
use wasm_autoscaler_tests::registry::{RegistryServer, PASSWORD, USER};

use crate::operator::{
    autoscaler, condition, deployed_rbac_with, deployment, digest_of, eventually, loopback_egress,
    policy_digest, replicas, start_with, Exporter, NS, WAIT,
};

fn forecast() -> Vec<u8> {
    bundled::require("forecast").unwrap().to_vec()
}

/// The bundled `forecast` component pushed to `repository` of `server`.
async fn push_forecast(server: &RegistryServer, repository: &str) -> Pushed {
    push(
        &forecast(),
        &format!("{}/{repository}", server.address),
        true,
        None,
    )
    .await
    .unwrap()
}

async fn start_registry(login: bool) -> RegistryServer {
    tokio::task::spawn_blocking(move || {
        if login {
            RegistryServer::start_with_login()
        } else {
            RegistryServer::start()
        }
    })
    .await
    .unwrap()
}

fn cache_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("oci-cache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A puller that may reach `address` over plain HTTP on loopback.
fn puller(address: &str, cache: Option<PathBuf>) -> Registry {
    let settings = RegistrySettings {
        plain_http: vec![address.to_string()],
        cache_dir: cache,
        ..RegistrySettings::default()
    };
    Registry::new(&settings, loopback_egress()).unwrap()
}

async fn pull(
    registry: &Registry,
    reference: &Reference,
    login: Option<&Login>,
    tenant: &str,
) -> Result<Pulled, PullError> {
    registry
        .pull(reference, login, tenant, MAX_COMPONENT_BYTES)
        .await
}

/// Requests for the blob `hex` in the registry's access log.
fn blob_gets(server: &RegistryServer, hex: &str) -> usize {
    server
        .log()
        .lines()
        .filter(|l| l.contains("GET /v2/") && l.contains(&format!("/blobs/sha256:{hex}")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_component_is_pulled_by_digest_and_then_served_from_the_cache() {
    let server = start_registry(false).await;
    let component = forecast();
    let target = format!("{}/team/forecast:v1", server.address);
    let pushed = push(&component, &target, true, None).await.unwrap();
    assert_eq!(pushed.reference.registry, server.address);
    assert_eq!(
        pushed.component_sha256,
        digest_of(&component).trim_start_matches("sha256:")
    );
    // The same component pushes to the same digest (nothing time-dependent in it).
    let again = push(
        &component,
        &format!("{}/team/forecast", server.address),
        true,
        None,
    )
    .await
    .unwrap();
    assert_eq!(again.reference, pushed.reference);

    let cache = cache_dir("pull");
    let first = pull(
        &puller(&server.address, Some(cache.clone())),
        &pushed.reference,
        None,
        "team-a",
    )
    .await
    .unwrap();
    assert_eq!(first.bytes, component);
    assert_eq!(first.origin, Origin::Registry);
    // A restarted operator asks the registry for the manifest (does this
    // namespace still have access?) but not for the blob again.
    let second = pull(
        &puller(&server.address, Some(cache)),
        &pushed.reference,
        None,
        "team-b",
    )
    .await
    .unwrap();
    assert_eq!(second.bytes, component);
    assert_eq!(second.origin, Origin::Cache);
    assert_eq!(
        blob_gets(&server, &pushed.component_sha256),
        1,
        "{}",
        server.log()
    );

    // The tag exists in the registry, yet a tag is never a source.
    let tagged = format!("{target}@{}", pushed.reference.digest);
    let refused = tagged.parse::<Reference>().unwrap_err().to_string();
    assert!(refused.contains("drop the tag"), "{refused}");
    // A digest the registry does not hold.
    let unknown: Reference = format!("{}/team/forecast@sha256:{}", server.address, "0".repeat(64))
        .parse()
        .unwrap();
    let err = pull(&puller(&server.address, None), &unknown, None, "team-a")
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::NotFound(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_over_the_cap_is_refused_before_its_blob_is_downloaded() {
    let server = start_registry(false).await;
    let component = forecast();
    let pushed = push_forecast(&server, "team/big").await;
    let registry = puller(&server.address, None);
    let cap = component.len() as u64 / 2;
    let err = registry
        .pull(&pushed.reference, None, "team-a", cap)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PullError::TooLarge { size, limit } if size == component.len() as u64 && limit == cap),
        "{err}"
    );
    assert_eq!(
        blob_gets(&server, &pushed.component_sha256),
        0,
        "refused from the manifest alone"
    );

    // A manifest that understates its layer's size: the registry (which
    // checks only that the blob exists) serves it, and the pull stops at the
    // declared size instead of reading what the registry sends.
    let liar = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json",
                   "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
        "layers": [{"mediaType": "application/wasm",
                    "digest": format!("sha256:{}", pushed.component_sha256), "size": 1000}],
    }))
    .unwrap();
    upload_blob(&server.address, "team/big", b"{}").await;
    let digest = digest_of(&liar);
    let status = reqwest::Client::new()
        .put(format!(
            "http://{}/v2/team/big/manifests/{digest}",
            server.address
        ))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(liar)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "manifest upload: {status}");
    let reference: Reference = format!("{}/team/big@{digest}", server.address)
        .parse()
        .unwrap();
    let err = pull(&registry, &reference, None, "team-a")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("more than the 1000 bytes the manifest declares"),
        "{err}"
    );
}

/// Uploads `bytes` as a blob of `repository` (an upload session, then one PUT).
async fn upload_blob(address: &str, repository: &str, bytes: &[u8]) {
    let http = reqwest::Client::new();
    let started = http
        .post(format!("http://{address}/v2/{repository}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202, "upload session");
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let mut url = reqwest::Url::parse(&format!("http://{address}"))
        .unwrap()
        .join(&location)
        .unwrap();
    url.query_pairs_mut()
        .append_pair("digest", &digest_of(bytes));
    let status = http
        .put(url)
        .header("Content-Type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "blob upload: {status}");
}

fn pull_secret(registry: &str, user: &str, password: &str) -> Secret {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = json!({"auths": {registry: {"auth": auth}}});
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "registry-login"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_from_a_dockerconfigjson_secret_opens_a_private_registry() {
    let server = start_registry(true).await;
    let component = forecast();
    let author = Login {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    let target = format!("{}/team/private", server.address);
    let err = push(&component, &target, true, None).await.unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("unauthorized") || err.to_string().contains("401"),
        "{err}"
    );
    let pushed = push(&component, &target, true, Some(&author))
        .await
        .unwrap();

    let registry = puller(&server.address, None);
    let err = pull(&registry, &pushed.reference, None, "team-a")
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::Denied(401)), "{err}");

    let secrets = [pull_secret(&server.address, USER, PASSWORD)];
    let login = registry_login(
        &SecretSource::Manifests(&secrets),
        "registry-login",
        &server.address,
    )
    .await
    .unwrap()
    .expect("a login for this registry");
    let pulled = pull(&registry, &pushed.reference, Some(&login), "team-a")
        .await
        .unwrap();
    assert_eq!(pulled.bytes, component);

    let wrong = [pull_secret(&server.address, USER, "guess")];
    let login = registry_login(
        &SecretSource::Manifests(&wrong),
        "registry-login",
        &server.address,
    )
    .await
    .unwrap()
    .unwrap();
    let err = pull(&registry, &pushed.reference, Some(&login), "team-a")
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::Denied(401)), "{err}");
    // A Secret with no login for this registry gives none.
    let other = [pull_secret("other.example", USER, PASSWORD)];
    assert_eq!(
        registry_login(
            &SecretSource::Manifests(&other),
            "registry-login",
            &server.address
        )
        .await
        .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_is_down_serves_only_what_a_namespace_pulled_before() {
    let mut server = start_registry(false).await;
    let component = forecast();
    let pushed = push_forecast(&server, "team/down").await;
    let cache = cache_dir("down");
    pull(
        &puller(&server.address, Some(cache.clone())),
        &pushed.reference,
        None,
        "team-a",
    )
    .await
    .unwrap();
    server.stop();

    // A restarted operator, the registry gone.
    let restarted = puller(&server.address, Some(cache));
    let pulled = pull(&restarted, &pushed.reference, None, "team-a")
        .await
        .unwrap();
    assert_eq!(pulled.origin, Origin::CacheWhileUnreachable);
    assert_eq!(pulled.bytes, component);
    // Another namespace that only knows the digest gets nothing from the cache.
    let err = pull(&restarted, &pushed.reference, None, "team-b")
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::Unreachable(_)), "{err}");
    let err = pull(
        &puller(&server.address, None),
        &pushed.reference,
        None,
        "team-a",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("cannot be reached"), "{err}");
}

/// Answers every request on a loopback port with `answer`, from a plain thread.
fn answer_always(answer: String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

/// How pulling any reference fails from a registry that always gives `answer`.
async fn pull_from(answer: String) -> PullError {
    let port = answer_always(answer);
    let address = format!("127.0.0.1:{port}");
    let reference: Reference = format!("{address}/team/p@sha256:{}", "a".repeat(64))
        .parse()
        .unwrap();
    pull(&puller(&address, None), &reference, None, "team-a")
        .await
        .unwrap_err()
}

fn http(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_keep_to_the_egress_rules_and_trust_nothing_the_digest_does_not_pin() {
    let server = start_registry(false).await;
    let pushed = push_forecast(&server, "team/egress").await;
    // The default rules deny loopback.
    let strict = Registry::new(
        &RegistrySettings {
            plain_http: vec![server.address.clone()],
            ..RegistrySettings::default()
        },
        EgressPolicy::default(),
    )
    .unwrap();
    let err = pull(&strict, &pushed.reference, None, "team-a")
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::Egress(_)), "{err}");
    assert!(err.is_refusal());

    // A registry whose token realm is the cloud metadata address.
    let err = pull_from(http(
        "401 Unauthorized",
        "WWW-Authenticate: Bearer realm=\"http://169.254.169.254/latest/token\",service=\"x\"\r\n",
        "",
    ))
    .await;
    assert!(matches!(err, PullError::Egress(_)), "{err}");
    // A registry redirecting to it: over HTTPS the address is refused, and
    // a redirect to plain HTTP is refused whatever the address.
    for (location, refusal) in [
        (
            "https://169.254.169.254/latest/meta-data/",
            "cloud metadata",
        ),
        (
            "http://169.254.169.254/latest/meta-data/",
            "other than HTTPS",
        ),
    ] {
        let answer = http(
            "307 Temporary Redirect",
            &format!("Location: {location}\r\n"),
            "",
        );
        let err = pull_from(answer).await;
        assert!(err.to_string().contains(refusal), "{location}: {err}");
    }
    // A registry answering a manifest that is not the pinned one.
    let err = pull_from(http(
        "200 OK",
        "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n",
        r#"{"schemaVersion":2,"layers":[]}"#,
    ))
    .await;
    assert!(matches!(err, PullError::DigestMismatch { .. }), "{err}");
    assert!(
        !err.to_string().contains("schemaVersion"),
        "no remote bytes in the error"
    );
}

/// An 18 MB Python predictor, too large for a ConfigMap, deployed the way
/// the issue asks for: pushed to a private registry, named by digest, with
/// the namespace's own dockerconfigjson Secret (which the namespace lets the
/// operator read); a tagged reference is refused by the API server, and a
/// namespace that granted nothing, and a registry that is down at start-up,
/// get a clear condition and scale nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_policy_deployed_from_a_private_registry_serves() {
    let Some(built) = crate::languages::built() else {
        return;
    };
    let python = built
        .iter()
        .find(|(l, _)| *l == "python")
        .unwrap()
        .1
        .clone();
    let registry = start_registry(true).await;
    let author = Login {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    let pushed = push(
        &python,
        &format!("{}/team/ewma-python", registry.address),
        true,
        Some(&author),
    )
    .await
    .unwrap();

    let server = ApiServer::start().await;
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/examples/oci-policy.yaml"
    ))
    .unwrap();
    server.enforce_rbac(deployed_rbac_with(&[&example], NS));
    let mut secret = serde_json::to_value(pull_secret(&registry.address, USER, PASSWORD)).unwrap();
    secret["metadata"]["namespace"] = json!(NS);
    server.create(secret);
    let exporter = Exporter::start(40.0).await;
    server.create(deployment("web", 1));
    let source = |reference: String| {
        json!({"predictor": {"oci": {"reference": reference, "pullSecret": "registry-login"},
                             "config": {"alpha": 0.5}}})
    };
    server.create(autoscaler(
        "web",
        "web",
        exporter.port,
        source(pushed.reference.to_string()),
    ));
    // A tag, though the registry has one: refused as a spec error.
    server.create(deployment("tagged", 1));
    server.create(autoscaler(
        "tagged",
        "tagged",
        exporter.port,
        source(format!("{}/team/ewma-python:latest", registry.address)),
    ));
    // team-b names a Secret of the same name but granted the operator nothing.
    let mut other = serde_json::to_value(pull_secret(&registry.address, USER, PASSWORD)).unwrap();
    other["metadata"]["namespace"] = json!("team-b");
    server.create(other);
    let mut web_b = deployment("web", 1);
    web_b["metadata"]["namespace"] = json!("team-b");
    server.create(web_b);
    let mut denied = autoscaler(
        "web",
        "web",
        exporter.port,
        source(pushed.reference.to_string()),
    );
    denied["metadata"]["namespace"] = json!("team-b");
    server.create(denied);

    // A registry that is down when the operator starts, and no copy on disk.
    let down = format!("127.0.0.1:{}", wasm_autoscaler_tests::fixtures::free_port());
    server.create(deployment("down", 1));
    server.create(autoscaler(
        "down",
        "down",
        exporter.port,
        json!({"predictor": {"oci": {"reference": format!("{down}/team/p@{}", pushed.reference.digest)}}}),
    ));

    let mut settings = Settings::new("oci");
    settings.egress = loopback_egress();
    settings.registry = RegistrySettings {
        plain_http: vec![registry.address.clone(), down.clone()],
        ..RegistrySettings::default()
    };
    let _op = start_with(&server, settings);
    let predictor = |server: &ApiServer| policy_digest(server, "web", "predictor");
    // Compiling 18 MB takes seconds (tens of seconds on a loaded debug build).
    eventually(
        "the Python predictor pulled and loaded",
        Duration::from_secs(120),
        || (predictor(&server) == Some(digest_of(&python))).then_some(()),
    )
    .await;
    eventually("scaled with the Python forecast", WAIT, || {
        (replicas(&server, "web") == 4).then_some(())
    })
    .await;
    let (_, reason, _) = condition(&server, "web", "PolicyLoaded").unwrap();
    assert_eq!(reason, "Loaded");

    let (_, message) = eventually("the tagged reference refused", WAIT, || {
        server
            .condition(NS, "tagged", "Ready")
            .map(|(_, reason, message)| (reason, message))
            .filter(|(reason, _)| reason == "InvalidSpec")
    })
    .await;
    assert!(message.contains("tags are not accepted"), "{message}");
    let (_, reason, message) = eventually("team-b refused its Secret", WAIT, || {
        server
            .condition("team-b", "web", "PolicyLoaded")
            .filter(|(status, ..)| status == "False")
    })
    .await;
    assert_eq!(reason, "SecretForbidden", "{message}");
    let (_, reason, message) = eventually("the unreachable registry reported", WAIT, || {
        condition(&server, "down", "PolicyLoaded").filter(|(status, ..)| status == "False")
    })
    .await;
    assert_eq!(reason, "LoadFailed");
    assert!(message.contains("cannot be reached"), "{message}");
    assert_eq!(
        replicas(&server, "down"),
        1,
        "nothing scaled without its predictor"
    );
    assert_eq!(replicas(&server, "tagged"), 1);
    assert_eq!(
        server.get("Deployment", "team-b", "web").unwrap()["spec"]["replicas"],
        json!(1)
    );
}

/// A registry as the large hosted ones behave (Docker Hub, GHCR, Harbor):
/// a bearer challenge, a token service that wants the login, and blobs
/// redirected to storage at another origin, which must not see the
/// registry's token. (docker-registry itself needs a JWT-signing token
/// server for this, so the test serves the protocol directly.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_is_fetched_with_the_login_and_kept_from_other_origins() {
    use axum::extract::State;
    use axum::http::{header, HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);
    impl Seen {
        fn note(&self, what: String) {
            self.0.lock().unwrap().push(what);
        }
        fn all(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }
    async fn serve(app: axum::Router) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        port
    }
    let auth_of = |h: &HeaderMap| {
        h.get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };

    let component = forecast();
    let layer = digest_of(&component);
    let seen = Seen::default();
    let blob = component.clone();
    let storage = serve(
        axum::Router::new()
            .route(
                "/blob",
                get(
                    move |State(seen): State<Seen>, headers: HeaderMap| async move {
                        seen.note(format!("storage auth=[{}]", auth_of(&headers)));
                        blob.clone()
                    },
                ),
            )
            .with_state(seen.clone()),
    )
    .await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json",
                   "digest": digest_of(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/wasm", "digest": layer, "size": component.len()}],
    }))
    .unwrap();
    let digest = digest_of(&manifest);
    let port = wasm_autoscaler_tests::fixtures::free_port();
    let challenge = format!(
        "Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test-registry\",scope=\"repository:team/p:pull\""
    );
    let expected_basic = {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
        )
    };
    let guarded = move |headers: &HeaderMap, ok: Response| -> Response {
        if auth_of(headers) == "Bearer t0ken" {
            ok
        } else {
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge.clone())],
            )
                .into_response()
        }
    };
    let (g1, g2) = (guarded.clone(), guarded);
    let app = axum::Router::new()
        .route(
            "/token",
            get(
                move |State(seen): State<Seen>,
                      uri: axum::http::Uri,
                      headers: HeaderMap| async move {
                    let query = format!("http://x/?{}", uri.query().unwrap_or(""));
                    let url = reqwest::Url::parse(&query).unwrap();
                    let scope = url.query_pairs().find(|(k, _)| k == "scope");
                    seen.note(format!("token scope={}", scope.map(|s| s.1).unwrap_or_default()));
                    if auth_of(&headers) == expected_basic {
                        axum::Json(json!({"token": "t0ken"})).into_response()
                    } else {
                        StatusCode::UNAUTHORIZED.into_response()
                    }
                },
            ),
        )
        .route(
            "/v2/team/p/manifests/{digest}",
            get(move |headers: HeaderMap| async move {
                let body = manifest.clone();
                g1(
                    &headers,
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/vnd.oci.image.manifest.v1+json",
                        )],
                        body,
                    )
                        .into_response(),
                )
            }),
        )
        .route(
            "/v2/team/p/blobs/{digest}",
            get(move |headers: HeaderMap| async move {
                let redirect = format!("http://127.0.0.1:{storage}/blob");
                g2(
                    &headers,
                    (
                        StatusCode::TEMPORARY_REDIRECT,
                        [(header::LOCATION, redirect)],
                    )
                        .into_response(),
                )
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let address = format!("127.0.0.1:{port}");
    let reference: Reference = format!("{address}/team/p@{digest}").parse().unwrap();
    // Storage is plain HTTP here too, so both origins are named.
    let settings = RegistrySettings {
        plain_http: vec![address.clone(), format!("127.0.0.1:{storage}")],
        ..RegistrySettings::default()
    };
    let registry = Registry::new(&settings, loopback_egress()).unwrap();
    let err = pull(&registry, &reference, None, "team-a")
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::Denied(401)), "{err}");
    let login = Login {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    let pulled = pull(&registry, &reference, Some(&login), "team-a")
        .await
        .unwrap();
    assert_eq!(pulled.bytes, component);
    let seen = seen.all();
    assert!(
        seen.iter()
            .any(|s| s == "token scope=repository:team/p:pull"),
        "{seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|s| s.starts_with("storage"))
            .collect::<Vec<_>>(),
        ["storage auth=[]"],
        "the token stays with the registry"
    );
}
