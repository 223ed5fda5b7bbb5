//! Registry credentials from a `kubernetes.io/dockerconfigjson` Secret.

use std::fmt;

use base64::Engine as _;

/// The Secret key a `kubernetes.io/dockerconfigjson` Secret keeps its config under.
pub const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Login({}, <redacted>)", self.username)
    }
}

#[derive(serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The login `config` (a docker config JSON) holds for `registry`
/// (`host[:port]`); `None` when it names no such registry.
pub fn from_docker_config(config: &[u8], registry: &str) -> Result<Option<Login>, String> {
    let parsed: DockerConfig = serde_json::from_slice(config)
        .map_err(|e| format!("`{DOCKER_CONFIG_KEY}` is not a docker config JSON: {e}"))?;
    let wanted = registry_key(registry);
    let Some(entry) = parsed
        .auths
        .iter()
        .find(|(key, _)| registry_key(key) == wanted)
        .map(|(_, e)| e)
    else {
        return Ok(None);
    };
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Some(Login {
            username: username.clone(),
            password: password.clone(),
        }));
    }
    let bad = || format!("the `auth` of `{registry}` is not base64 of `user:password`");
    let decoded = entry
        .auth
        .as_deref()
        .map(|a| base64::engine::general_purpose::STANDARD.decode(a.trim()))
        .ok_or_else(|| {
            format!("the entry of `{registry}` has neither `auth` nor `username` and `password`")
        })?
        .map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (username, password) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some(Login {
        username: username.into(),
        password: password.into(),
    }))
}

/// A config key or registry reduced to `host[:port]`, Docker Hub's names made one.
fn registry_key(text: &str) -> String {
    let text = text.trim();
    let text = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .unwrap_or(text);
    let host = text
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_found_by_registry() {
        let auth = base64::engine::general_purpose::STANDARD.encode("robot:s3cret:x");
        let config = format!(
            r#"{{"auths":{{"https://registry.example:5000/v2/":{{"auth":"{auth}"}},
               "https://index.docker.io/v1/":{{"username":"u","password":"p"}}}}}}"#
        );
        let login = from_docker_config(config.as_bytes(), "registry.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!(login.username, "robot");
        assert_eq!(login.password, "s3cret:x");
        assert!(!format!("{login:?}").contains("s3cret"));
        let hub = from_docker_config(config.as_bytes(), "docker.io")
            .unwrap()
            .unwrap();
        assert_eq!(hub.username, "u");
        assert_eq!(
            from_docker_config(config.as_bytes(), "other.example").unwrap(),
            None
        );
        assert!(from_docker_config(b"{", "x")
            .unwrap_err()
            .contains("not a docker config"));
        let broken = r#"{"auths":{"r.example":{"auth":"not base64!"}}}"#;
        assert!(from_docker_config(broken.as_bytes(), "r.example")
            .unwrap_err()
            .contains("not base64"));
    }
}
