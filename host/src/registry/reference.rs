//! The `oci` source's reference: `registry/repository@sha256:<hex>`.
//!
//! A digest is required and a tag refused: the digest is the pin, and a
//! tag beside it would only mislead a reader about what runs. The registry
//! host is required too (no implicit Docker Hub), so a reference reads the
//! same to the operator as to the person who wrote it.

use std::fmt;
use std::str::FromStr;

/// Longest repository path the distribution spec allows.
const MAX_REPOSITORY: usize = 255;

/// A pinned artifact in a registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host` or `host:port`, lowercase, as written.
    pub registry: String,
    /// The repository path, e.g. `team/policies/forecast`.
    pub repository: String,
    /// `sha256:` and 64 lowercase hex digits: the manifest's digest.
    pub digest: String,
}

impl Reference {
    /// The host the registry API answers on (Docker Hub's API is not on `docker.io`).
    pub fn api_host(&self) -> &str {
        match self.registry.as_str() {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            host => host,
        }
    }

    /// The manifest digest's hex digits.
    pub fn digest_hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.registry, self.repository, self.digest)
    }
}

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{reference}` is not a pinned OCI reference: {why}")]
pub struct ReferenceError {
    reference: String,
    why: String,
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(text: &str) -> Result<Self, ReferenceError> {
        let refuse = |why: &str| ReferenceError {
            reference: text.chars().take(300).collect(),
            why: why.to_string(),
        };
        let (name, digest) = text.rsplit_once('@').ok_or_else(|| {
            refuse("it has no digest; add `@sha256:<64 hex digits>` (tags are not accepted: the digest is the pin)")
        })?;
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| refuse("only sha256 digests are accepted"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(refuse(
                "the digest must be `sha256:` and 64 lowercase hex digits",
            ));
        }
        let (registry, repository) = name.split_once('/').ok_or_else(|| {
            refuse("name the registry, e.g. `registry.example/team/policy@sha256:…`")
        })?;
        if !is_registry_host(registry) {
            return Err(refuse(
                "the first part must be a registry host (with a dot or a port, or `localhost`)",
            ));
        }
        let last = repository.rsplit('/').next().unwrap_or_default();
        if last.contains(':') {
            return Err(refuse(
                "it has a tag as well as a digest; drop the tag (the digest is the pin)",
            ));
        }
        if repository.len() > MAX_REPOSITORY || !repository.split('/').all(is_path_component) {
            return Err(refuse(
                "the repository must be lowercase path components of letters, digits and single separators (`.`, `_`, `__`, `-`)",
            ));
        }
        Ok(Reference {
            registry: registry.to_ascii_lowercase(),
            repository: repository.to_string(),
            digest: digest.to_string(),
        })
    }
}

/// `host`, `host:port` or `[v6]:port`, where a host has a dot, a port or is `localhost`.
fn is_registry_host(text: &str) -> bool {
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (h, Some(p)),
        _ => (text, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return false;
        }
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let labels_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    labels_ok && (host.contains('.') || port.is_some() || host.eq_ignore_ascii_case("localhost"))
}

/// One repository path component: `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn is_path_component(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        let dashes = sep.bytes().all(|b| b == b'-');
        if !(sep == "." || sep == "_" || sep == "__" || dashes) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn pinned_references_parse() {
        let r: Reference = format!("registry.example:5000/team/forecast@sha256:{HEX}")
            .parse()
            .unwrap();
        assert_eq!(r.registry, "registry.example:5000");
        assert_eq!(r.repository, "team/forecast");
        assert_eq!(r.digest_hex(), HEX);
        assert_eq!(
            r.to_string(),
            format!("registry.example:5000/team/forecast@sha256:{HEX}")
        );
        let hub: Reference = format!("docker.io/acme/p@sha256:{HEX}").parse().unwrap();
        assert_eq!(hub.api_host(), "registry-1.docker.io");
        let local: Reference = format!("localhost/a_b/c-d.e@sha256:{HEX}").parse().unwrap();
        assert_eq!(local.repository, "a_b/c-d.e");
        let v6: Reference = format!("[::1]:5000/p@sha256:{HEX}").parse().unwrap();
        assert_eq!(v6.registry, "[::1]:5000");
    }

    #[test]
    fn tags_missing_digests_and_bad_names_are_refused() {
        let why = |text: String| text.parse::<Reference>().unwrap_err().to_string();
        assert!(why("registry.example/team/p:v1".into()).contains("no digest"));
        assert!(why(format!("registry.example/team/p:v1@sha256:{HEX}")).contains("drop the tag"));
        assert!(why(format!("registry.example/p@sha512:{HEX}")).contains("only sha256"));
        assert!(why("registry.example/p@sha256:ABC".into()).contains("64 lowercase hex"));
        assert!(why(format!("team/p@sha256:{HEX}")).contains("registry host"));
        assert!(why(format!("p@sha256:{HEX}")).contains("name the registry"));
        assert!(why(format!("registry.example/Team/p@sha256:{HEX}")).contains("lowercase"));
        assert!(why(format!("registry.example/a//b@sha256:{HEX}")).contains("lowercase"));
        assert!(why(format!("registry.example/a..b@sha256:{HEX}")).contains("lowercase"));
        assert!(why(format!("registry.example:0/a@sha256:{HEX}")).contains("registry host"));
        assert!(why(format!("registry.example:99999/a@sha256:{HEX}")).contains("registry host"));
    }
}
