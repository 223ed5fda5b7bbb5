//! Credentials a metric request or a registry pull carries.
//!
//! A spec never names a file. A tenant's credentials come from a Secret in
//! the autoscaler's own namespace (`bearerTokenSecret`, `caSecret`), read
//! through the API with `get` on that one object — which the namespace
//! grants the operator or not (see `docs/security.md`). The admin's own
//! credentials are files mounted into the operator and declared on its
//! command line (`--credential`), each bound to the one server it is for; a
//! spec refers to them by name and they are only ever sent to that server.
//! The operator's ServiceAccount token is never among them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::files::read_bounded;
use crate::operator::crd::{PrometheusMetric, SecretKeyRef};
use crate::registry::{from_docker_config, Login, DOCKER_CONFIG_KEY};

/// Largest token or CA bundle read (a Secret holds at most 1 MiB in all).
const MAX_CREDENTIAL_BYTES: u64 = 64 << 10;
/// How long a Secret read through the API is reused: a rotated token is picked up within it.
pub const SECRET_TTL: Duration = Duration::from_secs(30);

/// What a request carries, resolved for one metric. `Debug` hides the token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Auth {
    /// Sent as `Authorization: Bearer …`.
    pub bearer_token: Option<String>,
    /// PEM certificates the server's certificate is checked against (besides the system's).
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .finish()
    }
}

/// Why a metric's credentials could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the operator may not read Secret `{0}` in this namespace: grant it `get` on that Secret (see the Tenants section of docs/security.md)")]
    SecretForbidden(String),
    #[error("Secret `{0}` does not exist in this namespace")]
    SecretNotFound(String),
    #[error("Secret `{name}` has no key `{key}`")]
    KeyMissing { name: String, key: String },
    #[error("cannot read Secret `{name}`: {message}")]
    SecretUnreadable { name: String, message: String },
    #[error("no credential `{0}`: the operator's admin declares credentials with --credential")]
    UnknownCredential(String),
    #[error("credential `{name}` is for {origin}, not for {address}")]
    WrongAddress {
        name: String,
        origin: String,
        address: String,
    },
    #[error("credential `{name}`: {message}")]
    AdminFile { name: String, message: String },
    #[error("{0} is not a usable bearer token (printable ASCII, at most 64 KiB)")]
    BadToken(String),
    #[error("{0} holds no PEM certificate")]
    BadCa(String),
    #[error("Secret `{name}`: {message}")]
    BadDockerConfig { name: String, message: String },
}

impl CredentialError {
    /// A stable label for metrics and condition reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialError::SecretForbidden(_) => "secret_forbidden",
            CredentialError::SecretNotFound(_) => "secret_not_found",
            CredentialError::KeyMissing { .. } => "secret_key_missing",
            CredentialError::SecretUnreadable { .. } => "secret_unreadable",
            CredentialError::UnknownCredential(_) => "credential_unknown",
            CredentialError::WrongAddress { .. } => "credential_wrong_address",
            CredentialError::AdminFile { .. } => "credential_unreadable",
            CredentialError::BadToken(_) => "token_invalid",
            CredentialError::BadCa(_) => "ca_invalid",
            CredentialError::BadDockerConfig { .. } => "pull_secret_invalid",
        }
    }
}

/// A credential the admin declared: `NAME:address=URL[,token=FILE][,ca=FILE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCredential {
    pub name: String,
    /// `scheme://host:port` of the only server it is sent to.
    pub origin: String,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

impl FromStr for AdminCredential {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = "expected NAME:address=URL[,token=FILE][,ca=FILE]";
        let (name, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("`{text}`: {usage}"))?;
        super::names::object_name("credential name", name)?;
        let mut origin = None;
        let (mut token_file, mut ca_file) = (None, None);
        for part in rest.split(',') {
            match part.split_once('=') {
                Some(("address", url)) => origin = Some(origin_of(url)?),
                Some(("token", file)) => token_file = Some(PathBuf::from(file)),
                Some(("ca", file)) => ca_file = Some(PathBuf::from(file)),
                _ => return Err(format!("`{part}` in credential `{name}`: {usage}")),
            }
        }
        let origin =
            origin.ok_or_else(|| format!("credential `{name}` has no address: {usage}"))?;
        if token_file.is_none() && ca_file.is_none() {
            return Err(format!(
                "credential `{name}` has neither token nor ca: {usage}"
            ));
        }
        Ok(AdminCredential {
            name: name.to_string(),
            origin,
            token_file,
            ca_file,
        })
    }
}

/// `scheme://host:port` of a URL, with the scheme's default port filled in.
pub fn origin_of(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("`{url}` has no host"))?;
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| format!("`{url}` has no port"))?;
    Ok(format!(
        "{}://{}:{port}",
        parsed.scheme(),
        host.to_ascii_lowercase()
    ))
}

/// Where a metric's Secrets come from.
pub enum SecretSource<'a> {
    /// The cluster, through the API, in the autoscaler's namespace.
    Cluster {
        client: &'a Client,
        namespace: &'a str,
        cache: &'a SecretCache,
    },
    /// Secret manifests given on the command line.
    Manifests(&'a [Secret]),
}

/// Secrets read through the API, kept for [`SECRET_TTL`], by namespace and name.
#[derive(Default)]
pub struct SecretCache {
    entries: Mutex<HashMap<(String, String), (Instant, SecretRead)>>,
}

type SecretData = BTreeMap<String, Vec<u8>>;
/// What reading one Secret gave: its data, or why not.
type SecretRead = Result<SecretData, CredentialError>;

impl SecretCache {
    async fn get(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<SecretData, CredentialError> {
        let key = (namespace.to_string(), name.to_string());
        if let Some((at, found)) = self.entries.lock().expect("secret cache lock").get(&key) {
            if at.elapsed() < SECRET_TTL {
                return found.clone();
            }
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let found = match api.get(name).await {
            Ok(secret) => Ok(secret_data(&secret)),
            Err(kube::Error::Api(s)) if s.code == 403 => {
                Err(CredentialError::SecretForbidden(name.into()))
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                Err(CredentialError::SecretNotFound(name.into()))
            }
            Err(e) => Err(CredentialError::SecretUnreadable {
                name: name.into(),
                message: e.to_string(),
            }),
        };
        let mut entries = self.entries.lock().expect("secret cache lock");
        entries.retain(|_, (at, _)| at.elapsed() < SECRET_TTL);
        entries.insert(key, (Instant::now(), found.clone()));
        found
    }
}

fn secret_data(secret: &Secret) -> SecretData {
    let mut data: SecretData = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    // `stringData` only exists in manifests; the API server folds it into `data`.
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

impl SecretSource<'_> {
    async fn value(&self, r: &SecretKeyRef) -> Result<Vec<u8>, CredentialError> {
        let data = match self {
            SecretSource::Cluster {
                client,
                namespace,
                cache,
            } => cache.get(client, namespace, &r.name).await?,
            SecretSource::Manifests(secrets) => secrets
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(r.name.as_str()))
                .map(secret_data)
                .ok_or_else(|| CredentialError::SecretNotFound(r.name.clone()))?,
        };
        data.get(&r.key)
            .cloned()
            .ok_or_else(|| CredentialError::KeyMissing {
                name: r.name.clone(),
                key: r.key.clone(),
            })
    }
}

/// The admin's credentials, by name.
#[derive(Debug, Clone, Default)]
pub struct AdminCredentials {
    by_name: BTreeMap<String, AdminCredential>,
}

impl AdminCredentials {
    /// From `--credential` values; a name given twice is an error.
    pub fn new(list: Vec<AdminCredential>) -> Result<Self, String> {
        let mut by_name = BTreeMap::new();
        for c in list {
            let name = c.name.clone();
            if by_name.insert(name.clone(), c).is_some() {
                return Err(format!("credential `{name}` is declared twice"));
            }
        }
        Ok(AdminCredentials { by_name })
    }

    /// The declared names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    fn resolve(&self, name: &str, address: &str) -> Result<Auth, CredentialError> {
        let c = self
            .by_name
            .get(name)
            .ok_or_else(|| CredentialError::UnknownCredential(name.into()))?;
        let wrong = || CredentialError::WrongAddress {
            name: name.into(),
            origin: c.origin.clone(),
            address: address.chars().take(200).collect(),
        };
        if origin_of(address).map_err(|_| wrong())? != c.origin {
            return Err(wrong());
        }
        let read = |path: &PathBuf| {
            read_bounded(path, MAX_CREDENTIAL_BYTES).map_err(|e| CredentialError::AdminFile {
                name: name.into(),
                message: e.to_string(),
            })
        };
        let what = format!("credential `{name}`");
        Ok(Auth {
            bearer_token: c
                .token_file
                .as_ref()
                .map(|p| read(p).and_then(|b| token(&what, b)))
                .transpose()?,
            ca_pem: c
                .ca_file
                .as_ref()
                .map(|p| read(p).and_then(|b| ca(&what, b)))
                .transpose()?,
        })
    }
}

/// The credentials a `prometheus` metric names, fetched now.
pub async fn resolve(
    spec: &PrometheusMetric,
    secrets: &SecretSource<'_>,
    admin: &AdminCredentials,
) -> Result<Auth, CredentialError> {
    let mut auth = match &spec.credential {
        Some(name) => admin.resolve(name, &spec.address)?,
        None => Auth::default(),
    };
    if let Some(r) = &spec.bearer_token_secret {
        let what = format!("Secret `{}` key `{}`", r.name, r.key);
        auth.bearer_token = Some(token(&what, secrets.value(r).await?)?);
    }
    if let Some(r) = &spec.ca_secret {
        let what = format!("Secret `{}` key `{}`", r.name, r.key);
        auth.ca_pem = Some(ca(&what, secrets.value(r).await?)?);
    }
    Ok(auth)
}

/// The login for `registry` in pull Secret `name` (type
/// `kubernetes.io/dockerconfigjson`); `None` when it has none for that registry.
pub async fn registry_login(
    secrets: &SecretSource<'_>,
    name: &str,
    registry: &str,
) -> Result<Option<Login>, CredentialError> {
    let key = SecretKeyRef {
        name: name.into(),
        key: DOCKER_CONFIG_KEY.into(),
    };
    let config = secrets.value(&key).await?;
    from_docker_config(&config, registry).map_err(|message| CredentialError::BadDockerConfig {
        name: name.into(),
        message,
    })
}

fn token(what: &str, bytes: Vec<u8>) -> Result<String, CredentialError> {
    let text = String::from_utf8(bytes).map_err(|_| CredentialError::BadToken(what.into()))?;
    let text = text.trim();
    let printable = text.bytes().all(|b| (0x21..0x7f).contains(&b));
    if text.is_empty() || !printable || text.len() as u64 > MAX_CREDENTIAL_BYTES {
        return Err(CredentialError::BadToken(what.into()));
    }
    Ok(text.to_string())
}

fn ca(what: &str, bytes: Vec<u8>) -> Result<Vec<u8>, CredentialError> {
    if bytes.len() as u64 > MAX_CREDENTIAL_BYTES
        || !String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----")
    {
        return Err(CredentialError::BadCa(what.into()));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_credentials_parse_and_stay_with_their_server() {
        let dir = std::env::temp_dir().join(format!("cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "s3cret\n").unwrap();
        let c: AdminCredential = format!(
            "monitoring:address=https://Prometheus.monitoring:9090/x,token={}",
            dir.join("token").display()
        )
        .parse()
        .unwrap();
        assert_eq!(c.origin, "https://prometheus.monitoring:9090");
        let admin = AdminCredentials::new(vec![c]).unwrap();
        let auth = admin
            .resolve("monitoring", "https://prometheus.monitoring:9090")
            .unwrap();
        assert_eq!(auth.bearer_token.as_deref(), Some("s3cret"));
        assert!(
            !format!("{auth:?}").contains("s3cret"),
            "Debug hides the token"
        );
        for elsewhere in [
            "https://evil.example:9090",
            "http://prometheus.monitoring:9090",
            "https://prometheus.monitoring:9091",
            "https://prometheus.monitoring.evil.example:9090",
            "not a url",
        ] {
            assert!(
                matches!(
                    admin.resolve("monitoring", elsewhere),
                    Err(CredentialError::WrongAddress { .. })
                ),
                "{elsewhere}"
            );
        }
        assert!(matches!(
            admin.resolve("other", "https://prometheus.monitoring:9090"),
            Err(CredentialError::UnknownCredential(_))
        ));
        for bad in [
            "x",
            "x:token=/t",
            "x:address=https://p:1",
            "X:address=https://p:1,token=/t",
        ] {
            assert!(bad.parse::<AdminCredential>().is_err(), "{bad}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn tokens_must_be_one_printable_word() {
        assert_eq!(token("t", b" abc.def \n".to_vec()).unwrap(), "abc.def");
        for bad in [&b""[..], b"a b", b"a\nb", b"\xff"] {
            assert!(token("t", bad.to_vec()).is_err(), "{bad:?}");
        }
    }
}
