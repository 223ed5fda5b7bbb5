//! What a decision costs through Wasm next to the same policies compiled
//! natively into the host, measured side by side in one run.
//!
//! `cargo bench -p wasm-autoscaler --bench decision`
//!
//! Prints medians and p99s of: one full decision (ewma-trend forecast +
//! forecast decide on a 240-sample history) natively, through a reused
//! per-target instance, and through fresh instances; instantiation alone;
//! compiling a component cold, loading it from the in-memory cache, and
//! deserializing it from a serialized compilation.

use std::hint::black_box;
use std::time::{Duration, Instant};

use wasm_autoscaler::bundled;
use wasm_autoscaler::runtime::bindings as host;
use wasm_autoscaler::runtime::{synthetic, Runtime, RuntimeConfig, WorkerCommand};
use wasm_autoscaler_guest as guest;

const DECIDER_CONFIG: &str = r#"{"capacityPerPod": 50, "targetUtilization": 0.7}"#;
const PREDICTOR_CONFIG: &str = r#"{"alpha": 0.5, "window": 8}"#;

fn main() {
    let iterations: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let predictor = rt.load(bundled::EWMA_TREND).expect("ewma-trend loads");
    let decider = rt.load(bundled::FORECAST).expect("forecast loads");
    let forecast_request = synthetic::forecast_request(240, PREDICTOR_CONFIG);

    // The same inputs, in the SDK's types for the native run.
    let native_request = to_guest_forecast(&forecast_request);
    let native = measure(iterations, || {
        let f = guest::harness::forecast::<policy_ewma_trend::EwmaTrend>(&native_request).unwrap();
        let d =
            guest::harness::decide::<policy_forecast::ForecastSizing>(&guest_decide(f.forecasts))
                .unwrap();
        black_box(d.desired_replicas);
    });

    let mut p = predictor.instantiate().unwrap();
    let mut d = decider.instantiate().unwrap();
    let reused = measure(iterations, || {
        let f = p.forecast(&forecast_request).unwrap();
        let out = d
            .decide(&synthetic::decide_request(DECIDER_CONFIG, f.forecasts))
            .unwrap();
        black_box(out.desired_replicas);
    });
    let fresh = measure(iterations, || {
        let f = predictor
            .instantiate()
            .unwrap()
            .forecast(&forecast_request)
            .unwrap();
        let request = synthetic::decide_request(DECIDER_CONFIG, f.forecasts);
        let out = decider.instantiate().unwrap().decide(&request).unwrap();
        black_box(out.desired_replicas);
    });
    let instantiate = measure(iterations, || {
        black_box(decider.instantiate().unwrap());
    });

    let compile_runs = 10;
    let compile = measure(compile_runs, || {
        rt.clear_cache();
        black_box(rt.load(bundled::FORECAST).unwrap());
    });
    // The operator compiles in a child process under the compile budget.
    let isolated = Runtime::new(RuntimeConfig {
        compile_worker: Some(WorkerCommand {
            program: env!("CARGO_BIN_EXE_wasm-autoscaler").into(),
            args: vec!["compile-worker".into()],
        }),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let compile_isolated = measure(compile_runs, || {
        isolated.clear_cache();
        black_box(isolated.load(bundled::FORECAST).unwrap());
    });
    let cache_hit = measure(iterations, || {
        black_box(rt.load(bundled::FORECAST).unwrap());
    });
    let engine = wasmtime::Engine::new(wasmtime::Config::new().epoch_interruption(true)).unwrap();
    let serialized = wasmtime::component::Component::new(&engine, bundled::FORECAST)
        .unwrap()
        .serialize()
        .unwrap();
    let deserialize = measure(200, || {
        // SAFETY: the bytes were produced by `serialize` on this same engine
        // configuration a moment ago, which is the contract of `deserialize`.
        let c =
            unsafe { wasmtime::component::Component::deserialize(&engine, &serialized) }.unwrap();
        black_box(c);
    });

    println!("wasm-autoscaler decision benchmark ({iterations} iterations, 240-sample history)");
    println!(
        "  {:<44} {:>12} {:>12} {:>10}",
        "", "median", "p99", "vs native"
    );
    row("full decision, native (same policy code)", native, native);
    row("full decision, Wasm, reused instance", reused, native);
    row("full decision, Wasm, fresh instances", fresh, native);
    row("instantiation of one component", instantiate, native);
    println!();
    row("compile forecast component (cold)", compile, cache_hit);
    row(
        "  the same in the compile worker (cold)",
        compile_isolated,
        cache_hit,
    );
    row("load forecast component, cache hit", cache_hit, cache_hit);
    row("deserialize serialized compilation", deserialize, cache_hit);
    println!("  (the last column of the second block is relative to a cache hit)");
}

fn to_guest_forecast(r: &host::ForecastRequest) -> guest::ForecastRequest {
    guest::ForecastRequest {
        now_ms: r.now_ms,
        horizon_ms: r.horizon_ms,
        step_ms: r.step_ms,
        histories: r
            .histories
            .iter()
            .map(|h| guest::MetricHistory {
                name: h.name.clone(),
                samples: h
                    .samples
                    .iter()
                    .map(|s| guest::Sample {
                        time_ms: s.time_ms,
                        value: s.value,
                    })
                    .collect(),
            })
            .collect(),
        config: r.config.clone(),
        state: r.state.clone(),
    }
}

/// The decide request of `synthetic::decide_request`, in the SDK's types.
fn guest_decide(forecasts: Vec<guest::MetricForecast>) -> guest::DecideRequest {
    let h = synthetic::decide_request(DECIDER_CONFIG, Vec::new());
    guest::DecideRequest {
        target: guest::TargetState {
            now_ms: h.target.now_ms,
            current_replicas: h.target.current_replicas,
            ready_replicas: h.target.ready_replicas,
            warming_replicas: h.target.warming_replicas,
            min_replicas: h.target.min_replicas,
            max_replicas: h.target.max_replicas,
        },
        metrics: h
            .metrics
            .into_iter()
            .map(|m| guest::MetricValue {
                name: m.name,
                value: m.value,
            })
            .collect(),
        forecasts,
        config: h.config,
        state: h.state,
    }
}

/// Median and p99 of `n` runs of `f` after a warm-up.
fn measure(n: usize, mut f: impl FnMut()) -> [Duration; 2] {
    for _ in 0..(n / 10).max(1) {
        f();
    }
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    [at(0.5), at(0.99)]
}

fn row(what: &str, [median, p99]: [Duration; 2], base: [Duration; 2]) {
    let ratio = median.as_secs_f64() / base[0].as_secs_f64();
    println!(
        "  {what:<44} {:>12} {:>12} {:>9.1}×",
        fmt(median),
        fmt(p99),
        ratio
    );
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.2} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}
