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

/// A compile bomb: a component whose one function is `loops` loops one
/// after another. Each is a few bytes, and the compiler's register
/// allocation grows with the square of their number: 17,000 of them (about
/// 240 KB, smaller than the Python policy's largest function, a few hundred
/// bytes gzipped) take cranelift over a minute. `tag` gives each bomb its
/// own digest.
pub fn compile_bomb(loops: usize, tag: u32) -> Vec<u8> {
    let one = "(loop (i64.store (i32.const 0) (local.get 1)) (br_if 0 (local.get 0)))";
    let body = one.repeat(loops);
    let text = format!(
        "(component (core module (memory 1) (global i32 (i32.const {tag})) (func (local i32 i64) {body})))"
    );
    wat::parse_str(text).expect("the bomb assembles")
}

/// The languages `scripts/build-policies` builds `ewma-trend` in.
pub const POLICY_LANGUAGES: [&str; 4] = ["python", "js", "c", "zig"];

/// Where `scripts/build-policies` writes the `ewma-trend` component for `lang`.
pub fn built_policy_path(lang: &str) -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join(format!("policies/ewma-trend-{lang}.wasm"))
}

/// Reads the `ewma-trend` component `scripts/build-policies` wrote for
/// `lang`; the error names the file and what to run.
pub fn built_policy(lang: &str) -> Result<Vec<u8>, String> {
    let path = built_policy_path(lang);
    std::fs::read(&path).map_err(|e| format!("{}: {e}; run scripts/build-policies", path.display()))
}

/// The program `name` on `PATH`, if any.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

/// A loopback port nothing listens on (at the moment of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Serves `body()` with status 200 to every request on `ip` (any port), from
/// a plain thread, so it outlives any async runtime; returns the port.
pub fn serve_text(ip: &str, body: impl Fn() -> String + Send + 'static) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind((ip, 0)).expect("bind");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = body();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// Polls `check` every 100 ms until it gives a value, failing the test
/// after `timeout` with `what` was awaited.
pub async fn eventually<T>(
    what: &str,
    timeout: std::time::Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
