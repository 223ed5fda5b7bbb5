//! A decider for the host's tests: its config's `mode` picks a behaviour,
//! from well-behaved and stateful (in its state bytes or in its own memory)
//! to hostile (spinning, allocating without end, trapping, flooding its
//! output, probing the sandbox).

use std::sync::atomic::{AtomicU32, Ordering};

use serde::Deserialize;
use wasm_autoscaler_guest::{export_decider, log, DecideRequest, Decider, Decision};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    mode: String,
}

pub struct Misbehave;

/// Calls of mode `memory` this instance has served.
static CALLS: AtomicU32 = AtomicU32::new(0);

impl Decider for Misbehave {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        match config.mode.as_str() {
            "reject" => Err("mode `reject` rejects its config".into()),
            "trap-in-validate" => panic!("validate-config trapped on purpose"),
            _ => Ok(()),
        }
    }

    fn decide(config: &Config, request: &DecideRequest) -> Result<Decision, String> {
        let current = request.target.current_replicas;
        let decision = |desired, reason: String, state| Decision {
            desired_replicas: desired,
            reason,
            state,
        };
        match config.mode.as_str() {
            // Counts its calls in the state bytes the host hands back.
            "count" => {
                let n = request
                    .state
                    .as_deref()
                    .map_or(0, |s| u32::from_le_bytes(s.try_into().unwrap_or([0; 4])));
                Ok(decision(
                    current + 1,
                    format!("call {}", n + 1),
                    Some((n + 1).to_le_bytes().to_vec()),
                ))
            }
            // Counts its calls in guest memory, which only a reused instance remembers.
            "memory" => {
                let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
                Ok(decision(current, format!("instance call {n}"), None))
            }
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("decide trapped on purpose"),
            "recurse" => Ok(decision(depth(u64::MAX) as u32, "deep".into(), None)),
            "flood" => {
                let line = "x".repeat(1000);
                for _ in 0..2_000 {
                    println!("{line}");
                    log::info(&line);
                }
                Ok(decision(current, "flooded".into(), None))
            }
            "absurd" => Ok(decision(u32::MAX, "absurd".into(), None)),
            "huge-state" => Ok(decision(
                current,
                "huge state".into(),
                Some(vec![7; 1 << 20]),
            )),
            // Reports what the sandbox lets it see.
            "probe" => {
                let clock = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(u64::MAX, |d| d.as_secs());
                let env = std::env::vars().count();
                let file = std::fs::read("/etc/hostname").is_ok();
                let net = std::net::TcpStream::connect("127.0.0.1:1").is_ok();
                Ok(decision(
                    current,
                    format!("clock={clock} env={env} file={file} net={net}"),
                    None,
                ))
            }
            other => Err(format!("unknown mode `{other}`")),
        }
    }
}

export_decider!(Misbehave);

/// Recursion that only ends when the stack does.
fn depth(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        1 + std::hint::black_box(depth(std::hint::black_box(n - 1)))
    }
}
