//! Data packed into a component beside its code (a forecasting model, say),
//! as top-level custom sections named `wasm-autoscaler-artifact:NAME`.
//!
//! Packed into the component, the data travels and is pinned with it: a
//! ConfigMap key, a file or an OCI artifact carries one digest for code and
//! model together, and a policy reads it through the `artifact` interface of
//! the WIT contract. A custom section changes nothing the component does;
//! tools that do not know the name ignore it.

use std::sync::Arc;

use wasmparser::{Parser, Payload};

/// The custom section name prefix.
pub const SECTION_PREFIX: &str = "wasm-autoscaler-artifact:";
/// Longest artifact name.
const MAX_NAME: usize = 64;
/// The component binary's preamble (magic, version 0x0d, layer 1).
const COMPONENT_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// The artifacts of one component, by name.
pub type Artifacts = Arc<Vec<(String, Vec<u8>)>>;

/// The artifacts packed into `component` (none when it has none or does not parse).
pub fn unpack(component: &[u8]) -> Artifacts {
    let mut found = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(component) {
        match payload {
            Ok(Payload::Version { .. }) => depth += 1,
            Ok(Payload::End(_)) => depth = depth.saturating_sub(1),
            // Only the component's own sections: nested modules may carry any names.
            Ok(Payload::CustomSection(section)) if depth == 1 => {
                if let Some(name) = section.name().strip_prefix(SECTION_PREFIX) {
                    found.push((name.to_string(), section.data().to_vec()));
                }
            }
            Ok(_) => {}
            Err(_) => return Arc::new(Vec::new()),
        }
    }
    Arc::new(found)
}

/// `component` with `data` packed under `name`; refused when `component` is
/// not a component or already holds `name`.
pub fn pack(component: &[u8], name: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    if !component.starts_with(&COMPONENT_PREAMBLE) {
        return Err("not a WebAssembly component (a core module or something else)".into());
    }
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid {
        return Err(format!(
            "`{name}` is not an artifact name (lowercase letters, digits, `-` and `.`, at most {MAX_NAME})"
        ));
    }
    if unpack(component).iter().any(|(n, _)| n == name) {
        return Err(format!("the component already holds an artifact `{name}`"));
    }
    let section_name = format!("{SECTION_PREFIX}{name}");
    let mut content = Vec::with_capacity(section_name.len() + data.len() + 5);
    leb128(&mut content, section_name.len());
    content.extend_from_slice(section_name.as_bytes());
    content.extend_from_slice(data);
    let mut out = Vec::with_capacity(component.len() + content.len() + 6);
    out.extend_from_slice(component);
    out.push(0x00);
    leb128(&mut out, content.len());
    out.extend_from_slice(&content);
    Ok(out)
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_data_is_found_again_and_the_component_still_validates() {
        let component = crate::bundled::require("forecast").unwrap();
        assert!(unpack(component).is_empty());
        let model = vec![7u8; 300];
        let packed = pack(component, "model", &model).unwrap();
        let packed = pack(&packed, "notes.txt", b"hello").unwrap();
        let found = unpack(&packed);
        assert_eq!(found[0], ("model".to_string(), model));
        assert_eq!(found[1], ("notes.txt".to_string(), b"hello".to_vec()));
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&packed)
            .expect("still a valid component");
        assert!(pack(&packed, "model", b"x")
            .unwrap_err()
            .contains("already holds"));
        assert!(pack(&packed, "Model/..", b"x")
            .unwrap_err()
            .contains("not an artifact name"));
        assert!(pack(b"\0asm\x01\0\0\0", "model", b"x")
            .unwrap_err()
            .contains("not a WebAssembly component"));
    }
}
