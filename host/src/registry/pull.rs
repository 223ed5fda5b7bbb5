//! Pulling a pinned Wasm artifact with the operator's own HTTP client.
//!
//! The reference, the registry and every address the registry sends us to
//! (token realm, blob redirect) are tenant input, so every request goes
//! through the egress rules: host names through the egress resolver, IP
//! literals checked before the request, redirects followed by hand, one hop
//! at a time, each checked again, credentials sent only to the registry's
//! own origin and its token realm. (A general OCI client crate builds its
//! own HTTP client, which cannot take these rules; pushing, on an author's
//! machine, uses one: see `push.rs`.)
//!
//! Nothing is trusted that the digest does not pin: the manifest must hash
//! to the reference's digest, the blob to the layer's digest, and no more
//! bytes are read than the manifest declares or a component may hold.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, LOCATION, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use super::cache::ArtifactCache;
use super::{Login, Reference};
use crate::boundary::egress::{self, EgressPolicy, Refused};

/// Layer media types taken as a Wasm component: the CNCF Wasm OCI artifact
/// convention's, and the older wasm-to-oci one (Kubewarden, Krustlet).
pub const WASM_LAYER_MEDIA_TYPES: &[&str] = &[
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
];

/// Manifest media types asked for.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
/// Index media types: a list of manifests, not an artifact.
const INDEX_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// Most bytes of a manifest (the distribution spec's advice is 4 MiB).
const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Most bytes of a token answer.
const MAX_TOKEN_BYTES: u64 = 64 << 10;
/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// Most pulls in flight at once in the whole operator.
const MAX_PULLS: usize = 4;

/// Why an artifact could not be pulled.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PullError {
    #[error("{0}")]
    Egress(Refused),
    #[error("the registry cannot be reached: {0}")]
    Unreachable(String),
    #[error("the registry refused access (HTTP {0}); does `pullSecret` name a Secret with a login for it?")]
    Denied(u16),
    #[error("the registry has no {0}")]
    NotFound(String),
    #[error("the registry answered HTTP {0}")]
    Status(u16),
    #[error("the {what} does not match its digest: expected {expected}, got sha256:{actual}")]
    DigestMismatch {
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("not a Wasm artifact: {0}")]
    NotWasm(String),
    #[error("the component is {size} bytes, more than a component may be ({limit})")]
    TooLarge { size: u64, limit: u64 },
    #[error("{0}")]
    Protocol(String),
}

impl PullError {
    /// A stable label for the refusal metric and condition reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            PullError::Egress(_) => "egress_denied",
            PullError::Unreachable(_) | PullError::Status(_) => "source_unavailable",
            PullError::Denied(_) => "registry_denied",
            PullError::NotFound(_) => "artifact_not_found",
            PullError::DigestMismatch { .. } => "pin_mismatch",
            PullError::NotWasm(_) | PullError::Protocol(_) => "not_wasm_artifact",
            PullError::TooLarge { .. } => "component_too_large",
        }
    }

    /// Whether the same reference would fail the same way again: what the
    /// pinned manifest says cannot change. (A digest mismatch can: a broken
    /// proxy or a registry being repaired.)
    pub fn is_lasting(&self) -> bool {
        matches!(self, PullError::NotWasm(_) | PullError::TooLarge { .. })
    }

    /// Whether a rule refused it (rather than the registry failing).
    pub fn is_refusal(&self) -> bool {
        matches!(self, PullError::Egress(_) | PullError::TooLarge { .. })
    }
}

/// Where a pulled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Downloaded now.
    Registry,
    /// The registry granted this namespace the manifest; the blob was on disk.
    Cache,
    /// The registry could not be reached; this namespace pulled it before.
    CacheWhileUnreachable,
}

/// A pulled component.
#[derive(Debug)]
pub struct Pulled {
    pub bytes: Vec<u8>,
    pub origin: Origin,
}

/// How the operator reaches registries.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Timeout of one request (a whole blob download included).
    pub timeout: Duration,
    /// Registries (`host[:port]`) the admin allows over plain HTTP.
    pub plain_http: Vec<String>,
    /// Root of the on-disk artifact cache (none: nothing kept on disk).
    pub cache_dir: Option<PathBuf>,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            timeout: Duration::from_secs(60),
            plain_http: Vec::new(),
            cache_dir: None,
        }
    }
}

/// Pulls artifacts from registries within the egress rules.
pub struct Registry {
    http: reqwest::Client,
    egress: Arc<EgressPolicy>,
    plain_http: Vec<String>,
    cache: Option<ArtifactCache>,
    pulls: Semaphore,
}

impl Registry {
    /// A puller reaching only what `egress` allows.
    pub fn new(settings: &RegistrySettings, egress: EgressPolicy) -> Result<Self, String> {
        let egress = Arc::new(egress);
        let http = egress
            .http_client(settings.timeout, None)
            .map_err(|e| format!("cannot build the registry HTTP client: {e}"))?;
        let cache = settings
            .cache_dir
            .as_deref()
            .map(ArtifactCache::open)
            .transpose()?;
        Ok(Registry {
            http,
            egress,
            plain_http: settings
                .plain_http
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            cache,
            pulls: Semaphore::new(MAX_PULLS),
        })
    }

    /// The component `reference` pins, pulled on behalf of `tenant` with
    /// `login`, refused when larger than `limit` bytes before it is
    /// downloaded.
    pub async fn pull(
        &self,
        reference: &Reference,
        login: Option<&Login>,
        tenant: &str,
        limit: u64,
    ) -> Result<Pulled, PullError> {
        let _slot = self.pulls.acquire().await.expect("never closed");
        let mut session = Session {
            registry: self,
            reference,
            login,
            token: None,
            basic: false,
        };
        let path = format!(
            "/v2/{}/manifests/{}",
            reference.repository, reference.digest
        );
        let manifest = match session
            .get(&path, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, "manifest")
            .await
        {
            Ok(m) => m,
            Err(PullError::TooLarge { .. }) => {
                return Err(PullError::NotWasm(format!(
                    "the manifest is larger than {} MiB",
                    MAX_MANIFEST_BYTES >> 20
                )))
            }
            Err(PullError::Unreachable(why)) => {
                return self
                    .cached_for(tenant, reference, limit)
                    .ok_or(PullError::Unreachable(why));
            }
            Err(e) => return Err(e),
        };
        check_digest("manifest", &reference.digest, &manifest)?;
        let layer = wasm_layer(&manifest)?;
        if layer.size > limit {
            return Err(PullError::TooLarge {
                size: layer.size,
                limit,
            });
        }
        let layer_hex = layer.digest.trim_start_matches("sha256:");
        let cached = self.cache.as_ref().and_then(|c| c.get(layer_hex, limit));
        let (bytes, origin) = match cached {
            Some(bytes) => (bytes, Origin::Cache),
            None => {
                let path = format!("/v2/{}/blobs/{}", reference.repository, layer.digest);
                let bytes = session
                    .get(&path, "*/*", layer.size, "blob")
                    .await
                    .map_err(|e| match e {
                        PullError::TooLarge { .. } => PullError::Protocol(format!(
                            "the registry sent more than the {} bytes the manifest declares",
                            layer.size
                        )),
                        e => e,
                    })?;
                if bytes.len() as u64 != layer.size {
                    return Err(PullError::Protocol(format!(
                        "the registry sent {} bytes where the manifest declares {}",
                        bytes.len(),
                        layer.size
                    )));
                }
                check_digest("layer", &layer.digest, &bytes)?;
                (bytes, Origin::Registry)
            }
        };
        if let Some(cache) = &self.cache {
            cache.put(reference.digest_hex(), &manifest);
            cache.put(layer_hex, &bytes);
            cache.mark_pulled(tenant, reference);
        }
        Ok(Pulled { bytes, origin })
    }

    /// What `tenant` pulled before, from disk, when the registry is down.
    fn cached_for(&self, tenant: &str, reference: &Reference, limit: u64) -> Option<Pulled> {
        let cache = self.cache.as_ref()?;
        if !cache.pulled(tenant, reference) {
            return None;
        }
        let manifest = cache.get(reference.digest_hex(), MAX_MANIFEST_BYTES)?;
        let layer = wasm_layer(&manifest).ok()?;
        let bytes = cache.get(layer.digest.trim_start_matches("sha256:"), limit)?;
        Some(Pulled {
            bytes,
            origin: Origin::CacheWhileUnreachable,
        })
    }

    fn scheme_for(&self, registry: &str) -> &'static str {
        if self.plain_http.iter().any(|h| h == registry) {
            "http"
        } else {
            "https"
        }
    }
}

/// One pull's requests, carrying what the registry's challenge gave.
struct Session<'a> {
    registry: &'a Registry,
    reference: &'a Reference,
    login: Option<&'a Login>,
    /// A bearer token from the registry's token service.
    token: Option<String>,
    /// Whether the registry asked for basic authentication.
    basic: bool,
}

impl Session<'_> {
    /// The body at `path` on the registry, at most `limit` bytes.
    async fn get(
        &mut self,
        path: &str,
        accept: &str,
        limit: u64,
        what: &str,
    ) -> Result<Vec<u8>, PullError> {
        let host = self.reference.api_host().to_string();
        let scheme = self.registry.scheme_for(&host);
        let mut url = Url::parse(&format!("{scheme}://{host}{path}"))
            .map_err(|e| PullError::Protocol(format!("cannot form a URL: {e}")))?;
        // Compared as origins, so `host:443` over HTTPS is the registry's own.
        let origin = url.origin();
        let mut challenged = false;
        for _ in 0..=MAX_REDIRECTS {
            self.registry
                .egress
                .check_url(&url)
                .map_err(PullError::Egress)?;
            let own = url.origin() == origin;
            let mut request = self.registry.http.get(url.clone()).header(ACCEPT, accept);
            if own {
                request = self.authorize(request);
            }
            let response = request.send().await.map_err(network)?;
            let status = response.status();
            if status.is_success() {
                return read_capped(response, limit).await;
            }
            if status == StatusCode::UNAUTHORIZED && own && !challenged {
                challenged = true;
                self.answer_challenge(response.headers()).await?;
                continue;
            }
            if status.is_redirection() {
                url = self.redirect(&url, response.headers())?;
                continue;
            }
            return Err(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    PullError::Denied(status.as_u16())
                }
                StatusCode::NOT_FOUND => {
                    PullError::NotFound(format!("{what} for {}", self.reference))
                }
                s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                    PullError::Unreachable(format!("HTTP {}", s.as_u16()))
                }
                s => PullError::Status(s.as_u16()),
            });
        }
        Err(PullError::Protocol(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.token, self.login) {
            (Some(token), _) => request.bearer_auth(token),
            (None, Some(login)) if self.basic => {
                request.basic_auth(&login.username, Some(&login.password))
            }
            _ => request,
        }
    }

    /// Follows the registry's `WWW-Authenticate`: a bearer token from its
    /// token service, or basic authentication.
    async fn answer_challenge(
        &mut self,
        headers: &reqwest::header::HeaderMap,
    ) -> Result<(), PullError> {
        let denied = || PullError::Denied(401);
        let text = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        let challenges = http_auth::parse_challenges(&text).map_err(|_| denied())?;
        let param = |c: &http_auth::ChallengeRef, name: &str| {
            c.params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_unescaped())
        };
        if let Some(bearer) = challenges
            .iter()
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
        {
            let realm = param(bearer, "realm").ok_or_else(denied)?;
            let mut url = Url::parse(&realm).map_err(|_| {
                PullError::Protocol("the registry's token realm is not a URL".into())
            })?;
            if !matches!(url.scheme(), "https" | "http") {
                return Err(PullError::Protocol(
                    "the registry's token realm is not HTTP(S)".into(),
                ));
            }
            let scope = format!("repository:{}:pull", self.reference.repository);
            {
                let mut query = url.query_pairs_mut();
                if let Some(service) = param(bearer, "service") {
                    query.append_pair("service", &service);
                }
                query.append_pair("scope", &scope);
            }
            self.token = Some(self.fetch_token(url).await?);
            return Ok(());
        }
        if challenges
            .iter()
            .any(|c| c.scheme.eq_ignore_ascii_case("basic"))
            && self.login.is_some()
        {
            self.basic = true;
            return Ok(());
        }
        Err(denied())
    }

    async fn fetch_token(&self, url: Url) -> Result<String, PullError> {
        self.registry
            .egress
            .check_url(&url)
            .map_err(PullError::Egress)?;
        let mut request = self.registry.http.get(url);
        if let Some(login) = self.login {
            request = request.basic_auth(&login.username, Some(&login.password));
        }
        let response = request.send().await.map_err(network)?;
        let status = response.status();
        if !status.is_success() {
            return Err(if status.is_server_error() {
                PullError::Unreachable(format!("token service: HTTP {}", status.as_u16()))
            } else {
                PullError::Denied(status.as_u16())
            });
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body = read_capped(response, MAX_TOKEN_BYTES).await?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|_| PullError::Protocol("the token service's answer is not JSON".into()))?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| PullError::Protocol("the token service gave no token".into()))
    }

    /// Where a redirect leads: HTTPS only (plain HTTP only back to a registry
    /// the admin allowed over it), within the redirect budget.
    fn redirect(&self, from: &Url, headers: &reqwest::header::HeaderMap) -> Result<Url, PullError> {
        let location = headers
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| PullError::Protocol("a redirect without a location".into()))?;
        let next = from
            .join(location)
            .map_err(|_| PullError::Protocol("a redirect to something that is not a URL".into()))?;
        let plain_ok =
            next.scheme() == "http" && self.registry.scheme_for(&host_port(&next)) == "http";
        if next.scheme() != "https" && !plain_ok {
            return Err(PullError::Protocol(
                "a redirect to something other than HTTPS".into(),
            ));
        }
        Ok(next)
    }
}

/// `host` or `host:port` of a URL, as a registry is written.
fn host_port(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

fn network(e: reqwest::Error) -> PullError {
    match egress::refusal_in(&e) {
        Some(refused) => PullError::Egress(refused.clone()),
        // Without the URL: it is ours, and the condition names the reference.
        None => PullError::Unreachable(e.without_url().to_string()),
    }
}

/// The body, refused as soon as it passes `limit` bytes.
async fn read_capped(mut response: reqwest::Response, limit: u64) -> Result<Vec<u8>, PullError> {
    if let Some(length) = response.content_length() {
        if length > limit {
            return Err(PullError::TooLarge {
                size: length,
                limit,
            });
        }
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(network)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(PullError::TooLarge {
                size: (body.len() + chunk.len()) as u64,
                limit,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn check_digest(what: &'static str, expected: &str, bytes: &[u8]) -> Result<(), PullError> {
    let actual = hex::encode(Sha256::digest(bytes));
    if expected.strip_prefix("sha256:") == Some(actual.as_str()) {
        Ok(())
    } else {
        Err(PullError::DigestMismatch {
            what,
            expected: expected.chars().take(80).collect(),
            actual,
        })
    }
}

/// The one Wasm layer of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub digest: String,
    pub size: u64,
}

/// Finds the one Wasm layer of `manifest` (already checked against its
/// digest, so what it says was written by whoever pinned it).
pub fn wasm_layer(manifest: &[u8]) -> Result<Layer, PullError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Manifest {
        media_type: Option<String>,
        #[serde(default)]
        layers: Vec<Descriptor>,
        manifests: Option<serde_json::Value>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Descriptor {
        media_type: String,
        digest: String,
        size: u64,
    }
    let parsed: Manifest = serde_json::from_slice(manifest)
        .map_err(|e| PullError::NotWasm(format!("the manifest is not an OCI manifest: {e}")))?;
    let is_index = parsed.manifests.is_some()
        || parsed
            .media_type
            .as_deref()
            .is_some_and(|m| INDEX_MEDIA_TYPES.contains(&m));
    if is_index {
        return Err(PullError::NotWasm(
            "the digest is an image index; pin the digest of the artifact's own manifest".into(),
        ));
    }
    let wasm: Vec<&Descriptor> = parsed
        .layers
        .iter()
        .filter(|l| WASM_LAYER_MEDIA_TYPES.contains(&l.media_type.as_str()))
        .collect();
    let [layer] = wasm.as_slice() else {
        let found: Vec<String> = parsed
            .layers
            .iter()
            .map(|l| l.media_type.chars().take(100).collect())
            .collect();
        return Err(PullError::NotWasm(format!(
            "it needs exactly one layer of media type {}; it has {} such layers (all layers: [{}])",
            WASM_LAYER_MEDIA_TYPES.join(" or "),
            wasm.len(),
            found.join(", ")
        )));
    };
    let hex = layer.digest.strip_prefix("sha256:").unwrap_or_default();
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(PullError::NotWasm(
            "the Wasm layer's digest is not a sha256 digest".into(),
        ));
    }
    Ok(Layer {
        digest: layer.digest.clone(),
        size: layer.size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(layers: &[(&str, &str)]) -> Vec<u8> {
        let layers: Vec<serde_json::Value> = layers
            .iter()
            .map(|(m, d)| serde_json::json!({"mediaType": m, "digest": d, "size": 10}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": "sha256:00", "size": 2},
            "layers": layers,
        }))
        .unwrap()
    }

    #[test]
    fn exactly_one_wasm_layer_is_taken() {
        let d = format!("sha256:{}", "a".repeat(64));
        let layer = wasm_layer(&manifest(&[("application/wasm", &d)])).unwrap();
        assert_eq!(
            layer,
            Layer {
                digest: d.clone(),
                size: 10
            }
        );
        assert!(wasm_layer(&manifest(&[(
            "application/vnd.wasm.content.layer.v1+wasm",
            &d
        )]))
        .is_ok());
        let none = wasm_layer(&manifest(&[("application/vnd.oci.image.layer.v1.tar", &d)]))
            .unwrap_err()
            .to_string();
        assert!(
            none.contains("exactly one layer") && none.contains("v1.tar"),
            "{none}"
        );
        assert!(wasm_layer(&manifest(&[
            ("application/wasm", &d),
            ("application/wasm", &d)
        ]))
        .is_err());
        let traversal = wasm_layer(&manifest(&[("application/wasm", "sha256:../../etc")]))
            .unwrap_err()
            .to_string();
        assert!(traversal.contains("not a sha256 digest"), "{traversal}");
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": []
        }))
        .unwrap();
        assert!(wasm_layer(&index)
            .unwrap_err()
            .to_string()
            .contains("image index"));
        assert!(wasm_layer(b"<html>")
            .unwrap_err()
            .to_string()
            .contains("not an OCI manifest"));
    }
}
