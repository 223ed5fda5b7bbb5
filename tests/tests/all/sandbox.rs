//! The sandbox against hostile and odd guests: deadlines, memory caps,
//! traps, output floods, capabilities, state, and the safety layer behind them.

use std::time::{Duration, Instant};

use wasm_autoscaler::pipeline::{Observation, Pipeline, PolicySpec, TargetSpec};
use wasm_autoscaler::runtime::{synthetic, RuntimeError};
use wasm_autoscaler::safety::{Behavior, Fallback, Limit, Proposal};

use crate::guests::{misbehave_policy, mode, runtime_with_deadline, strict_runtime};

fn decide(mode_name: &str) -> Result<u32, RuntimeError> {
    let rt = strict_runtime();
    let mut i = misbehave_policy(&rt).instantiate()?;
    i.decide(&synthetic::decide_request(&mode(mode_name), vec![]))
        .map(|d| d.desired_replicas)
}

#[test]
fn an_endless_loop_is_interrupted_near_the_deadline() {
    let rt = strict_runtime();
    let mut i = misbehave_policy(&rt).instantiate().unwrap();
    let request = synthetic::decide_request(&mode("spin"), vec![]);
    let started = Instant::now();
    let e = i.decide(&request).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, RuntimeError::Timeout(_)), "{e}");
    // Deadline 50 ms; the point is "bounded", not a precise timing.
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn an_allocation_bomb_stops_at_the_memory_cap() {
    // A generous deadline, so the cap and not the clock stops it.
    let rt = runtime_with_deadline(Duration::from_secs(10));
    let mut i = misbehave_policy(&rt).instantiate().unwrap();
    let e = i
        .decide(&synthetic::decide_request(&mode("alloc"), vec![]))
        .unwrap_err();
    assert!(
        matches!(e, RuntimeError::MemoryCap(n) if n == 32 << 20),
        "{e}"
    );
}

#[test]
fn unbounded_recursion_is_a_trap_and_the_next_instance_works() {
    let e = decide("recurse").unwrap_err();
    assert!(matches!(e, RuntimeError::Trap(_)), "{e}");
    assert_eq!(decide("count").unwrap(), 11);
}

#[test]
fn a_panic_is_a_trap_not_a_host_crash() {
    let e = decide("trap").unwrap_err();
    assert!(matches!(e, RuntimeError::Trap(_)), "{e}");
}

#[test]
fn a_trap_in_validate_config_is_reported() {
    let rt = strict_runtime();
    let mut i = misbehave_policy(&rt).instantiate().unwrap();
    assert!(matches!(
        i.validate_config(&mode("trap-in-validate")),
        Err(RuntimeError::Trap(_))
    ));
    let mut i = misbehave_policy(&rt).instantiate().unwrap();
    let e = i.validate_config(&mode("reject")).unwrap_err();
    assert!(
        matches!(e, RuntimeError::Config(ref m) if m.contains("rejects its config")),
        "{e}"
    );
}

#[test]
fn a_flood_of_output_is_capped_and_the_call_still_answers() {
    // A generous deadline: this is about the output cap, not about speed.
    let rt = runtime_with_deadline(Duration::from_secs(10));
    let mut i = misbehave_policy(&rt).instantiate().unwrap();
    let d = i
        .decide(&synthetic::decide_request(&mode("flood"), vec![]))
        .unwrap();
    assert_eq!(d.reason, "flooded");
}

#[test]
fn the_guest_sees_no_clock_env_files_or_network() {
    let rt = strict_runtime();
    let mut i = misbehave_policy(&rt).instantiate().unwrap();
    let d = i
        .decide(&synthetic::decide_request(&mode("probe"), vec![]))
        .unwrap();
    assert_eq!(d.reason, "clock=0 env=0 file=false net=false");
}

fn target(mode_name: &str, behavior: Behavior) -> Pipeline {
    let rt = strict_runtime();
    Pipeline::new(TargetSpec {
        min_replicas: 1,
        max_replicas: 50,
        interval_ms: 15_000,
        warmup_ms: 60_000,
        history_len: 16,
        long_history: None,
        metrics: vec!["rps".into()],
        predictor: None,
        schedule: None,
        decider: PolicySpec {
            policy: misbehave_policy(&rt),
            config: mode(mode_name),
        },
        behavior,
        zero: Default::default(),
    })
}

fn observe(now_ms: u64, current: u32) -> Observation {
    Observation {
        now_ms,
        current_replicas: current,
        ready_replicas: current,
        warming_replicas: 0,
        metrics: vec![("rps".into(), Some(100.0))],
    }
}

#[test]
fn policy_state_round_trips_between_ticks() {
    let mut p = target("count", Behavior::unrestricted());
    let reasons: Vec<String> = (0..3)
        .map(|k| p.evaluate(&observe(k * 15_000, 5)).reason)
        .collect();
    assert_eq!(reasons, ["call 1", "call 2", "call 3"]);
}

#[test]
fn absurd_output_holds_instead_of_scaling_to_max() {
    let mut p = target("absurd", Behavior::unrestricted());
    let r = p.evaluate(&observe(0, 5));
    assert!(
        matches!(&r.proposal, Proposal::Failed(m) if m.contains("4294967295") && m.contains("absurd")),
        "{:?}",
        r.proposal
    );
    assert_eq!(r.failures, [("decider", "absurd")]);
    assert_eq!(r.verdict.replicas, 5);
    assert_eq!(r.verdict.limits, [Limit::HeldOnFailure]);
}

#[test]
fn oversized_state_is_not_kept() {
    let mut p = target("huge-state", Behavior::unrestricted());
    let r = p.evaluate(&observe(0, 5));
    assert_eq!(r.verdict.replicas, 5);
}

#[test]
fn repeated_timeouts_fall_back_and_never_crash() {
    let mut behavior = Behavior::unrestricted();
    behavior.fallback = Fallback {
        after_failures: 2,
        replicas: Some(8),
    };
    let mut p = target("spin", behavior);
    let first = p.evaluate(&observe(0, 5));
    assert!(
        matches!(first.proposal, Proposal::Failed(ref m) if m.contains("deadline")),
        "{:?}",
        first.proposal
    );
    assert_eq!(first.verdict.replicas, 5);
    let second = p.evaluate(&observe(15_000, 5));
    assert_eq!(second.verdict.replicas, 8);
    assert_eq!(second.verdict.limits, [Limit::Fallback]);
}

#[test]
fn a_failing_target_does_not_disturb_another() {
    let mut bad = target("spin", Behavior::unrestricted());
    let mut good = target("count", Behavior::unrestricted());
    std::thread::scope(|s| {
        s.spawn(|| {
            for k in 0..5 {
                bad.evaluate(&observe(k * 15_000, 5));
            }
        });
        for k in 0..50 {
            let r = good.evaluate(&observe(k * 15_000, 5));
            assert_eq!(r.reason, format!("call {}", k + 1));
        }
    });
}
