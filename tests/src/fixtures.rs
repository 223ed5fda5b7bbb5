//! Builders shared by the tests and the benchmarks.

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

/// The languages `scripts/build-policies` builds `ewma-trend` in.
pub const POLICY_LANGUAGES: [&str; 4] = ["python", "js", "c", "zig"];

/// Reads the `ewma-trend` component `scripts/build-policies` wrote for
/// `lang`; the error names the file and what to run.
pub fn built_policy(lang: &str) -> Result<Vec<u8>, String> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join(format!("policies/ewma-trend-{lang}.wasm"));
    std::fs::read(&path).map_err(|e| format!("{}: {e}; run scripts/build-policies", path.display()))
}
