//! Policy set-ups to compare: the bundled ones, and set-ups read from a JSON file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::bundled;
use crate::pipeline::{LongHistorySpec, PolicySpec, MAX_LONG_HISTORY_POINTS};
use crate::runtime::{Runtime, RuntimeError, World};
use crate::safety::{ActionWindow, Behavior, ZeroRules};

use super::SimParams;

/// The name of the HPA baseline set-up, which every comparison includes.
pub const BASELINE: &str = "hpa";

/// One way of autoscaling the simulated target.
#[derive(Clone)]
pub struct Setup {
    pub name: String,
    pub predictor: Option<PolicySpec>,
    /// A second predictor (a schedule), combined with the predictor by max.
    pub schedule: Option<PolicySpec>,
    pub decider: PolicySpec,
    pub behavior: Behavior,
    /// The names under which the policies see the simulated `rps` and `utilization`.
    pub metric_names: [String; 2],
    /// How far ahead predictors forecast, if not the pods' start-up time.
    pub warmup_seconds: Option<u64>,
    /// Scale to zero, when the replay's `minReplicas` is 0 (without it the set-up keeps one pod).
    pub zero: ZeroRules,
    /// Each metric's long history, kept from the replayed samples.
    pub long_history: Option<LongHistorySpec>,
}

/// The simulated metrics under their own names.
pub fn plain_metric_names() -> [String; 2] {
    super::METRICS.map(String::from)
}

/// Why a set-up could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("set-up `{setup}`: {policy}: {source}")]
    Policy {
        setup: String,
        policy: String,
        source: RuntimeError,
    },
    #[error("set-up `{setup}`: {message}")]
    Setup { setup: String, message: String },
}

/// The bundled set-ups: the HPA baseline, a reactive throughput sizer, the
/// predictive `ewma-trend` + `forecast` pair, and the `adaptive` upper band
/// with a churn-controlled `forecast`.
pub fn bundled(runtime: &Runtime, params: &SimParams) -> Result<Vec<Setup>, SetupError> {
    let load = |setup: &str, name: &str, config: String| -> Result<PolicySpec, SetupError> {
        let bytes = bundled::policy(name).expect("bundled policy names are fixed");
        let policy = runtime.load(bytes).map_err(|source| SetupError::Policy {
            setup: setup.into(),
            policy: format!("bundled:{name}"),
            source,
        })?;
        Ok(PolicySpec { policy, config })
    };
    let sizing = format!(
        r#"{{"metric": "rps", "capacityPerPod": {}, "targetUtilization": 0.7, "scaleDownTolerance": 0.2}}"#,
        params.capacity_per_pod
    );
    // Scale down gently and rarely: shed at most max(2 pods, 20%) a tick
    // after a 5-minute window, and make at most 2 changes in 2 minutes, so
    // a dip between surges neither drops capacity the next surge needs nor
    // makes the replica count flap. (A percent limit alone would never
    // remove a pod below a handful of replicas: it keeps ceil(80%) of them,
    // as HPA does.) The decider itself ignores dips within 20% of the
    // current count.
    let mut gentle = Behavior::unrestricted();
    gentle.scale_down.stabilization_seconds = 300;
    gentle.scale_down.max_step_pods = Some(2);
    gentle.scale_down.max_step_percent = Some(20.0);
    gentle.max_actions = Some(ActionWindow {
        count: 2,
        window_seconds: 120,
    });
    Ok(vec![
        Setup {
            name: BASELINE.into(),
            predictor: None,
            decider: load(
                BASELINE,
                "hpa",
                r#"{"metric": "utilization", "target": 0.7}"#.into(),
            )?,
            behavior: Behavior::default(),
            metric_names: plain_metric_names(),
            warmup_seconds: None,
            zero: ZeroRules::default(),
            schedule: None,
            long_history: None,
        },
        Setup {
            name: "reactive".into(),
            predictor: None,
            decider: load("reactive", "forecast", sizing.clone())?,
            behavior: gentle.clone(),
            metric_names: plain_metric_names(),
            warmup_seconds: None,
            zero: ZeroRules::default(),
            schedule: None,
            long_history: None,
        },
        Setup {
            name: "predictive".into(),
            predictor: Some(load(
                "predictive",
                "ewma-trend",
                r#"{"alpha": 0.5, "window": 8}"#.into(),
            )?),
            decider: load("predictive", "forecast", sizing)?,
            behavior: gentle,
            metric_names: plain_metric_names(),
            warmup_seconds: None,
            zero: ZeroRules::default(),
            schedule: None,
            long_history: None,
        },
        Setup {
            name: "adaptive".into(),
            predictor: Some(load("adaptive", "adaptive", ADAPTIVE_PREDICTOR.into())?),
            decider: load(
                "adaptive",
                "forecast",
                format!(
                    r#"{{"metric": "rps", "capacityPerPod": {}, {ADAPTIVE_SIZING}}}"#,
                    params.capacity_per_pod
                ),
            )?,
            behavior: adaptive_behavior(),
            metric_names: plain_metric_names(),
            warmup_seconds: None,
            zero: ZeroRules::default(),
            schedule: None,
            long_history: None,
        },
    ])
}

/// The `adaptive` set-up's predictor: an upper band that its own recent
/// forecasts would have covered 97% of the time, lone spikes not chased.
pub const ADAPTIVE_PREDICTOR: &str = r#"{"metric": "rps", "quantile": 0.97}"#;

/// The `adaptive` set-up's sizing (besides `capacityPerPod`): up to 76% of a
/// pod's capacity for the band, down only once the band fits at 64%, in steps
/// of at least 20%, and the band alone decides (a spike it does not chase
/// does not scale the target).
pub const ADAPTIVE_SIZING: &str = r#""targetUtilization": 0.76, "scaleDownUtilization": 0.64, "scaleDownTolerance": 0.2, "useCurrent": false"#;

/// The `adaptive` set-up's safety rules: scale up at once; scale down after
/// ten minutes of the band staying low, which keeps pods through the dips
/// between surges instead of paying their start-up again.
pub fn adaptive_behavior() -> Behavior {
    let mut b = Behavior::unrestricted();
    b.scale_down.stabilization_seconds = 600;
    b
}

/// Fetches the component an `oci:` reference names (the text after `oci:`).
pub type PullFn<'a> = &'a dyn Fn(&str) -> Result<Vec<u8>, String>;

/// The set-ups of a JSON file: a list of `{"name", "predictor"?: {"policy",
/// "config"?}, "schedule"?: {…}, "decider": {"policy", "config"?}, "behavior"?,
/// "scaleToZero"?: {"activation": {"rps": N}, "idleAfterSeconds"?},
/// "longHistory"?: {"stepSeconds", "windowSeconds"}}` where
/// `policy` is a `.wasm` path (relative to the file), `bundled:NAME` or
/// `oci:REFERENCE` (given to `pull`). The HPA baseline is put first unless
/// the file has a set-up named `hpa`.
pub fn from_file(
    runtime: &Runtime,
    params: &SimParams,
    path: &Path,
    pull: PullFn<'_>,
) -> Result<Vec<Setup>, SetupError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SetupError::Read {
        path: shown.clone(),
        source,
    })?;
    let files: Vec<SetupFile> = serde_json::from_str(&text).map_err(|e| SetupError::Invalid {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut setups = Vec::new();
    for f in files {
        f.behavior.validate().map_err(|message| SetupError::Setup {
            setup: f.name.clone(),
            message,
        })?;
        let predictor = match &f.predictor {
            Some(p) => Some(p.load(runtime, base, &f.name, World::Predictor, pull)?),
            None => None,
        };
        let schedule = match &f.schedule {
            Some(p) => Some(p.load(runtime, base, &f.name, World::Predictor, pull)?),
            None => None,
        };
        let decider = f
            .decider
            .load(runtime, base, &f.name, World::Decider, pull)?;
        let zero = match &f.scale_to_zero {
            Some(z) => z.rules().map_err(|message| SetupError::Setup {
                setup: f.name.clone(),
                message,
            })?,
            None => ZeroRules::default(),
        };
        let long_history = match &f.long_history {
            Some(l) => Some(l.spec().map_err(|message| SetupError::Setup {
                setup: f.name.clone(),
                message,
            })?),
            None => None,
        };
        setups.push(Setup {
            name: f.name,
            predictor,
            schedule,
            decider,
            behavior: f.behavior,
            metric_names: plain_metric_names(),
            warmup_seconds: None,
            zero,
            long_history,
        });
    }
    if !setups.iter().any(|s| s.name == BASELINE) {
        let baseline = bundled(runtime, params)?
            .into_iter()
            .next()
            .expect("the baseline is bundled");
        setups.insert(0, baseline);
    }
    Ok(setups)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SetupFile {
    name: String,
    #[serde(default)]
    predictor: Option<PolicyRef>,
    #[serde(default)]
    schedule: Option<PolicyRef>,
    decider: PolicyRef,
    #[serde(default)]
    behavior: Behavior,
    #[serde(default)]
    scale_to_zero: Option<ScaleToZero>,
    #[serde(default)]
    long_history: Option<LongHistoryFile>,
}

/// `"longHistory": {"stepSeconds": 300, "windowSeconds": 604800}` in a set-ups file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LongHistoryFile {
    step_seconds: u64,
    window_seconds: u64,
}

impl LongHistoryFile {
    fn spec(&self) -> Result<LongHistorySpec, String> {
        let points = self.window_seconds / self.step_seconds.max(1);
        if self.step_seconds == 0 || points == 0 || points > MAX_LONG_HISTORY_POINTS as u64 {
            return Err(format!(
                "longHistory: stepSeconds must be at least 1 and windowSeconds / stepSeconds 1 to {MAX_LONG_HISTORY_POINTS}, got {} / {}",
                self.window_seconds, self.step_seconds
            ));
        }
        Ok(LongHistorySpec {
            step_ms: self.step_seconds * 1000,
            window_ms: self.window_seconds * 1000,
            filled: Vec::new(),
        })
    }
}

/// `"scaleToZero": {"activation": {"rps": 0.5}, "idleAfterSeconds": 300}` in a set-ups file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScaleToZero {
    /// Activation threshold by metric; only `rps` exists with no pods.
    activation: std::collections::BTreeMap<String, f64>,
    #[serde(default = "default_idle_seconds")]
    idle_after_seconds: u64,
}

fn default_idle_seconds() -> u64 {
    300
}

impl ScaleToZero {
    fn rules(&self) -> Result<ZeroRules, String> {
        if self.activation.is_empty() {
            return Err("scaleToZero.activation names no metric".into());
        }
        for (name, threshold) in &self.activation {
            if name != "rps" {
                return Err(format!(
                    "scaleToZero.activation: `{name}` does not exist with no pods; only `rps` does"
                ));
            }
            if !(threshold.is_finite() && *threshold >= 0.0) {
                return Err(format!(
                    "scaleToZero.activation.{name} must be a number ≥ 0, got {threshold}"
                ));
            }
        }
        Ok(ZeroRules {
            activation: self.activation.clone().into_iter().collect(),
            idle_ms: self.idle_after_seconds.saturating_mul(1000),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyRef {
    policy: String,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

impl PolicyRef {
    fn load(
        &self,
        runtime: &Runtime,
        base: &Path,
        setup: &str,
        world: World,
        pull: PullFn<'_>,
    ) -> Result<PolicySpec, SetupError> {
        let fail = |source| SetupError::Policy {
            setup: setup.into(),
            policy: self.policy.clone(),
            source,
        };
        if let Some(reference) = self.policy.strip_prefix("oci:") {
            let bytes = pull(reference).map_err(|message| SetupError::Setup {
                setup: setup.into(),
                message,
            })?;
            let policy = runtime.load(&bytes).map_err(fail)?;
            return self.checked(policy, setup, world);
        }
        let policy = match self.policy.strip_prefix("bundled:") {
            Some(name) => {
                let bytes = bundled::require(name).map_err(|message| SetupError::Setup {
                    setup: setup.into(),
                    message,
                })?;
                runtime.load(bytes).map_err(fail)?
            }
            None => {
                let path: PathBuf = base.join(&self.policy);
                let bytes = std::fs::read(&path).map_err(|source| SetupError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                runtime.load(&bytes).map_err(fail)?
            }
        };
        self.checked(policy, setup, world)
    }

    /// `policy` as this reference's world and configuration.
    fn checked(
        &self,
        policy: crate::runtime::Policy,
        setup: &str,
        world: World,
    ) -> Result<PolicySpec, SetupError> {
        let fail = |source| SetupError::Policy {
            setup: setup.into(),
            policy: self.policy.clone(),
            source,
        };
        if policy.world() != world {
            return Err(SetupError::Setup {
                setup: setup.into(),
                message: format!(
                    "{} implements the {} world, but is used as a {world}",
                    self.policy,
                    policy.world()
                ),
            });
        }
        let config = self
            .config
            .as_ref()
            .map_or_else(String::new, |v| v.to_string());
        let spec = PolicySpec { policy, config };
        spec.policy
            .instantiate()
            .and_then(|mut i| i.validate_config(&spec.config))
            .map_err(fail)?;
        Ok(spec)
    }
}
