//! What ships inside the binary: the reference policies, built from
//! `policies/` by `build.rs`, and a real traffic trace (`traces/`, with its
//! provenance in `traces/README.md`).

/// The `hpa` decider: the Kubernetes HPA replica rule.
pub const HPA: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policy_hpa.wasm"));
/// The `ewma-trend` predictor.
pub const EWMA_TREND: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policy_ewma_trend.wasm"));
/// The `forecast` decider.
pub const FORECAST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policy_forecast.wasm"));

/// The `schedule` predictor: capacity for known events, by cron windows in a time zone.
pub const SCHEDULE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policy_schedule.wasm"));

/// The `onnx` predictor: runs an ONNX model packed into it (`wasm-autoscaler pack`).
pub const ONNX: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policy_onnx.wasm"));

/// The `adaptive` predictor: an upper band from a Holt ensemble, its own errors and an anomaly guard.
pub const ADAPTIVE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policy_adaptive.wasm"));

/// The `weighted` decider: per-signal replica needs combined by weight.
pub const WEIGHTED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policy_weighted.wasm"));

/// The `seasonal` predictor: the current level plus the change the same time of day (or week) brought.
pub const SEASONAL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policy_seasonal.wasm"));

/// The bundled policies by name, as `bundled:NAME` refers to them.
pub const POLICIES: &[(&str, &[u8])] = &[
    ("hpa", HPA),
    ("ewma-trend", EWMA_TREND),
    ("forecast", FORECAST),
    ("schedule", SCHEDULE),
    ("onnx", ONNX),
    ("adaptive", ADAPTIVE),
    ("weighted", WEIGHTED),
    ("seasonal", SEASONAL),
];

/// The bundled policy called `name`.
pub fn policy(name: &str) -> Option<&'static [u8]> {
    POLICIES.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The bundled policy called `name`, or an error listing the bundled names.
pub fn require(name: &str) -> Result<&'static [u8], String> {
    policy(name).ok_or_else(|| {
        let names: Vec<_> = POLICIES.iter().map(|(n, _)| *n).collect();
        format!("no bundled policy `{name}` (bundled: {})", names.join(", "))
    })
}

/// File name of the bundled trace.
pub const TRACE_NAME: &str = "wc98_1998-06-10_group-stage_60s.csv";
/// The bundled trace: a week of the 1998 World Cup web site (see `traces/README.md`).
pub const TRACE: &str = include_str!("../traces/wc98_1998-06-10_group-stage_60s.csv");
