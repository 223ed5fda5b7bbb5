//! Access to the test guests built by `tests/build.rs`.

use std::sync::OnceLock;
use std::time::Duration;

use wasm_autoscaler::runtime::{InstanceMode, Limits, Policy, Runtime, RuntimeConfig};

/// The bytes of the `guest-misbehave` test decider.
pub fn misbehave() -> Vec<u8> {
    guest("guest_misbehave")
}

/// The bytes of the `guest-history-echo` test predictor.
pub fn history_echo() -> Vec<u8> {
    guest("guest_history_echo")
}

fn guest(name: &str) -> Vec<u8> {
    let path = format!("{}/{name}.wasm", env!("TEST_GUEST_DIR"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("test guest {path} missing ({e}); tests/build.rs builds it"))
}

/// A runtime with a short deadline and a small memory cap, as the sandbox
/// tests want; shared so the guest compiles once per test run.
pub fn strict_runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| runtime_with_deadline(Duration::from_millis(50)))
        .clone()
}

/// A runtime with the given deadline and the strict memory and output caps.
pub fn runtime_with_deadline(deadline: Duration) -> Runtime {
    Runtime::new(RuntimeConfig {
        deadline,
        limits: Limits {
            memory_bytes: 32 << 20,
            output_bytes: 4 << 10,
            ..Limits::default()
        },
        instance_mode: InstanceMode::PerTarget,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// The misbehave guest loaded into `runtime`.
pub fn misbehave_policy(runtime: &Runtime) -> Policy {
    runtime
        .load(&misbehave())
        .expect("the misbehave guest loads")
}

/// `{"mode": "<mode>"}`.
pub fn mode(mode: &str) -> String {
    format!(r#"{{"mode": "{mode}"}}"#)
}
