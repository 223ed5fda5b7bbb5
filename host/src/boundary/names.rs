//! Object names and keys a spec uses to point at other objects.
//!
//! kube-rs puts a name into the request path as it is, so a name such as
//! `../../other-namespace/deployments/web` would address an object outside
//! the autoscaler's namespace. Only names the API server itself could have
//! given an object are let through.

/// Longest object name the API server accepts (a DNS subdomain).
const MAX_NAME: usize = 253;

/// Checks that `name` is a valid object name (RFC 1123 subdomain: lowercase
/// letters, digits, `-` and `.`, starting and ending with a letter or digit).
pub fn object_name(field: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field}: `{}` is not a valid object name (lowercase letters, digits, `-` and `.`, at most {MAX_NAME} characters)",
            name.chars().take(80).collect::<String>()
        ))
    }
}

/// Checks that `key` is a valid ConfigMap or Secret key (letters, digits, `-`, `_`, `.`; not `.`,
/// not starting with `..`), as the API server does.
pub fn data_key(field: &str, key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= MAX_NAME
        && key != "."
        && !key.starts_with("..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field}: `{}` is not a valid key (letters, digits, `-`, `_` and `.`)",
            key.chars().take(80).collect::<String>()
        ))
    }
}

/// The CRD schema pattern for object names (the API server checks it before the operator sees the object).
pub const OBJECT_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$";
/// The CRD schema pattern for ConfigMap and Secret keys.
pub const DATA_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_tricks_are_not_names() {
        for bad in [
            "",
            "..",
            "../other/deployments/web",
            "web/scale",
            "Web",
            "-web",
            "web-",
            "a%2Fb",
            "web?x=1",
        ] {
            assert!(object_name("f", bad).is_err(), "{bad:?}");
        }
        for good in ["web", "web-1", "a.b.c", "0"] {
            assert!(object_name("f", good).is_ok(), "{good:?}");
        }
        assert!(object_name("f", &"a".repeat(254)).is_err());
    }

    #[test]
    fn keys_are_file_names_without_folders() {
        for bad in ["", ".", "..", "..data", "a/b", "a b", "x\0"] {
            assert!(data_key("k", bad).is_err(), "{bad:?}");
        }
        for good in [
            "decider.wasm",
            "predictor.wasm.zst",
            "TOKEN",
            "ca.crt",
            ".hidden",
        ] {
            assert!(data_key("k", good).is_ok(), "{good:?}");
        }
    }
}
