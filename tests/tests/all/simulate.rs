//! The offline replay through the library: determinism and robustness.

use wasm_autoscaler::bundled;
use wasm_autoscaler::pipeline::PolicySpec;
use wasm_autoscaler::runtime::{Runtime, RuntimeConfig};
use wasm_autoscaler::safety::{Behavior, ZeroRules};
use wasm_autoscaler::sim::{self, setup, Setup, SimParams, Trace};

use crate::guests::{misbehave_policy, mode};

/// The first day of the bundled trace.
fn one_day() -> Trace {
    let text: String = bundled::TRACE
        .lines()
        .take(1 + 1440)
        .map(|l| format!("{l}\n"))
        .collect();
    Trace::parse("wc98-day1", &text).unwrap()
}

fn params() -> SimParams {
    SimParams {
        capacity_per_pod: 20.0,
        startup_seconds: 60,
        initial_replicas: 12,
        min_replicas: 1,
        max_replicas: 100,
        interval_seconds: 15,
        history_len: 240,
        slo_utilization: 0.8,
        start_ms: 0,
    }
}

#[test]
fn the_same_replay_gives_byte_identical_json() {
    let trace = one_day();
    let run = || {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let setups = setup::bundled(&rt, &params()).unwrap();
        sim::compare(&trace, &params(), &setups).to_json()
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    assert!(a.contains("\"setup\": \"hpa\""));
}

#[test]
fn the_replay_measures_what_happened() {
    let trace = one_day();
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let setups = setup::bundled(&rt, &params()).unwrap();
    let report = sim::compare(&trace, &params(), &setups);
    assert_eq!(report.setups.len(), 4);
    for s in &report.setups {
        assert!(s.scale_actions > 0, "{s:?}");
        assert!(s.pod_hours > 24.0, "at least one pod all day: {s:?}");
        assert!(s.slo_violation_seconds >= s.overload_seconds, "{s:?}");
        assert_eq!(s.failed_decisions, 0, "{s:?}");
    }
    // At 20 rps a pod the day's peak needs more than the 100 pods allowed:
    // even the clairvoyant violates the SLO then, but never more than a
    // set-up does, and it pays least.
    for s in &report.setups {
        assert!(s.pod_hours > report.limit.pod_hours, "{s:?}");
        assert!(
            s.slo_violation_seconds >= report.limit.slo_violation_seconds,
            "{s:?} vs {:?}",
            report.limit
        );
    }
    assert!(sim::render_svg(&report, None).starts_with("<svg"));
}

#[test]
fn a_policy_that_always_fails_holds_the_target() {
    // A trap, and an answer of 4294967295 replicas the safety layer refuses
    // as absurd: both are failed decisions in the report.
    for failure in ["trap", "absurd"] {
        let trace = one_day();
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let broken = Setup {
            name: "broken".into(),
            predictor: None,
            decider: PolicySpec {
                policy: misbehave_policy(&rt),
                config: mode(failure),
            },
            behavior: Behavior::default(),
            metric_names: sim::setup::plain_metric_names(),
            warmup_seconds: None,
            schedule: None,
            zero: Default::default(),
            long_history: None,
        };
        let result = sim::run(&trace, &params(), &broken);
        let ticks = 86_400 / 15;
        assert_eq!(result.summary.failed_decisions, ticks, "{failure}");
        assert_eq!(result.summary.scale_actions, 0, "{failure}");
        assert_eq!(result.summary.peak_replicas, 12, "{failure}");
    }
}

/// Three weekdays from Monday 2026-06-15 00:00 UTC, a minute a step: 20 rps,
/// and 400 rps in Berlin business hours (08:00–18:00, UTC+2 in June), which
/// start with a jump no reactive autoscaler can meet.
fn business_days() -> Trace {
    let mut csv = String::from("t_seconds,rps\n");
    for minute in 0..3 * 1440u64 {
        let hour_utc = (minute % 1440) / 60;
        let rps = if (6..16).contains(&hour_utc) {
            400.0
        } else {
            20.0
        };
        csv.push_str(&format!("{},{rps}\n", minute * 60));
    }
    Trace::parse("business-days", &csv).unwrap()
}

fn bundled_spec(rt: &Runtime, policy: &[u8], config: &str) -> PolicySpec {
    PolicySpec {
        policy: rt.load(policy).unwrap(),
        config: config.into(),
    }
}

/// The bundled `forecast` decider sizing `rps` at 70% of 20 per pod, alone.
fn sizing_setup(rt: &Runtime, name: &str, behavior: Behavior) -> Setup {
    let sizing = r#"{"metric": "rps", "capacityPerPod": 20, "targetUtilization": 0.7}"#;
    Setup {
        name: name.into(),
        predictor: None,
        schedule: None,
        decider: bundled_spec(rt, bundled::FORECAST, sizing),
        behavior,
        metric_names: sim::setup::plain_metric_names(),
        warmup_seconds: None,
        zero: Default::default(),
        long_history: None,
    }
}

#[test]
fn a_schedule_removes_the_violations_of_a_known_morning_ramp() {
    let trace = business_days();
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let params = SimParams {
        start_ms: 1_781_481_600_000, // 2026-06-15T00:00:00Z
        initial_replicas: 2,
        ..params()
    };
    let reactive = sizing_setup(&rt, "reactive", Behavior::unrestricted());
    let scheduled = Setup {
        name: "scheduled".into(),
        schedule: Some(bundled_spec(
            &rt,
            bundled::SCHEDULE,
            r#"{"timeZone": "Europe/Berlin", "windows": [
                {"cron": "0 8 * * MON-FRI", "duration": "10h", "metric": "rps", "value": 400}]}"#,
        )),
        ..reactive.clone()
    };
    let report = sim::compare(&trace, &params, &[reactive, scheduled]);
    let (without, with) = (&report.setups[0], &report.setups[1]);
    println!(
        "morning ramp, 3 days: SLO-violation s {} without the schedule, {} with it; pod-hours {:.1} vs {:.1}",
        without.slo_violation_seconds, with.slo_violation_seconds, without.pod_hours, with.pod_hours
    );
    assert!(
        without.slo_violation_seconds >= 3 * 60,
        "each morning's jump is missed without a schedule: {without:?}"
    );
    assert_eq!(with.slo_violation_seconds, 0, "{with:?}");
    assert_eq!(with.failed_forecasts, 0, "{with:?}");
    // The schedule only adds the capacity the window needs, a minute early.
    assert!(
        with.pod_hours < without.pod_hours * 1.05,
        "{with:?} vs {without:?}"
    );
}

#[test]
fn an_idle_workload_scales_to_zero_and_reports_its_cold_starts() {
    // A day with nights of nothing: 30 rps from 08:00 to 20:00, else 0.
    let mut csv = String::from("t_seconds,rps\n");
    for minute in 0..2 * 1440u64 {
        let hour = (minute % 1440) / 60;
        let rps = if (8..20).contains(&hour) { 30.0 } else { 0.0 };
        csv.push_str(&format!("{},{rps}\n", minute * 60));
    }
    let trace = Trace::parse("idle-nights", &csv).unwrap();
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let params = SimParams {
        min_replicas: 0,
        initial_replicas: 0,
        ..params()
    };
    let always_on = sizing_setup(&rt, "always-on", Behavior::default());
    let to_zero = Setup {
        name: "to-zero".into(),
        zero: ZeroRules {
            activation: vec![("rps".into(), 0.0)],
            idle_ms: 600_000,
        },
        ..always_on.clone()
    };
    let report = sim::compare(&trace, &params, &[always_on, to_zero]);
    let (on, zero) = (&report.setups[0], &report.setups[1]);
    println!(
        "idle nights, 2 days: pod-hours {:.1} kept up vs {:.1} to zero; cold-start s {} vs {}",
        on.pod_hours, zero.pod_hours, on.cold_start_seconds, zero.cold_start_seconds
    );
    // Kept at one pod at least without the zero rules, though min is 0.
    assert_eq!(on.cold_start_seconds, 0, "{on:?}");
    assert!(on.pod_hours >= 48.0, "{on:?}");
    // Zero overnight; each morning's wake-up meets no ready pod for the
    // start-up (60 s) plus up to one tick (15 s).
    // 24 idle hours in the trace: nearly one pod-hour each saved (less the idle periods).
    assert!(zero.pod_hours <= on.pod_hours - 20.0, "{zero:?} vs {on:?}");
    assert!(
        (2 * 60..=2 * 75).contains(&zero.cold_start_seconds),
        "{zero:?}"
    );
    assert!(zero.scale_actions >= 4, "{zero:?}");
    let json = report.to_json();
    assert!(json.contains("\"coldStartSeconds\""), "{json}");
    assert!(report.to_table().contains("cold-start s"));
}

/// A day, a minute a step, whose `cpu` column says the pods are busier than
/// the request rate alone shows from 10:00 to 14:00 (an expensive endpoint).
fn rps_and_cpu() -> Trace {
    let mut csv = String::from("t_seconds,rps,cpu\n");
    for minute in 0..1440u64 {
        let heavy = (600..840).contains(&minute);
        let cpu = if heavy { 14.0 } else { 3.5 };
        csv.push_str(&format!("{},100,{cpu}\n", minute * 60));
    }
    Trace::parse("rps-and-cpu", &csv).unwrap()
}

#[test]
fn every_trace_column_reaches_the_policies_and_weights_decide() {
    let trace = rps_and_cpu();
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let params = SimParams {
        initial_replicas: 5,
        ..params()
    };
    // rps needs 100 / 20 = 5 pods all day; cpu needs 3.5 / 0.7 = 5, then 14 / 0.7 = 20.
    let weighted = |name: &str, signals: &str| Setup {
        name: name.into(),
        decider: bundled_spec(
            &rt,
            bundled::WEIGHTED,
            &format!(r#"{{"signals": {signals}}}"#),
        ),
        ..sizing_setup(&rt, name, Behavior::unrestricted())
    };
    let rps_only = weighted("rps-only", r#"[{"metric": "rps", "perPod": 20}]"#);
    let seeds_like = weighted(
        "cpu-and-rps",
        r#"[{"metric": "cpu", "perPod": 0.7, "weight": 0.4}, {"metric": "rps", "perPod": 20, "weight": 0.6}]"#,
    );
    let report = sim::compare(&trace, &params, &[rps_only, seeds_like]);
    let (rps, both) = (&report.setups[0], &report.setups[1]);
    for s in [rps, both] {
        assert_eq!((s.failed_decisions, s.failed_forecasts), (0, 0), "{s:?}");
    }
    // 0.4 × 20 + 0.6 × 5 = 11 pods while the CPU is busy; 5 otherwise.
    assert_eq!((rps.peak_replicas, both.peak_replicas), (5, 11));
    assert_eq!((rps.scale_actions, both.scale_actions), (0, 2));
}
