//! Builders shared by the controller tests and the reload benchmark.

use serde_json::Value;

/// A component with a custom section appended: the same code under another digest.
pub fn variant(bytes: &[u8], tag: &str) -> Vec<u8> {
    let name = b"wasm-autoscaler-test";
    let payload = tag.as_bytes();
    let size = 1 + name.len() + payload.len();
    assert!(size < 128, "one-byte LEB128 section size");
    let mut out = bytes.to_vec();
    out.push(0);
    out.push(size as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(payload);
    out
}

/// Bytes as a ConfigMap's `binaryData` holds them (base64).
pub fn base64(bytes: &[u8]) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())).expect("bytes serialize")
}
