//! A loaded policy component and the instances that run it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use wasmtime::component::Component;
use wasmtime::{Store, Trap};

use super::bindings::decider::{Decider, DeciderPre};
use super::bindings::predictor::{Predictor, PredictorPre};
use super::bindings::{DecideRequest, Decision, ForecastRequest, ForecastResponse, LogLevel};
use super::sandbox::{LongHistory, Sandbox};
use super::{Artifacts, Digest, Runtime, RuntimeError};

/// Which policy world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    Predictor,
    Decider,
}

impl World {
    /// The world's name in `wit/`.
    pub fn name(&self) -> &'static str {
        match self {
            World::Predictor => "predictor",
            World::Decider => "decider",
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether an instance outlives a call, and who may call it next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstanceMode {
    /// Instances of a policy shared within a tenant ([`Policy::shared_within`]) are kept
    /// idle in the runtime's pool between calls and serve any target of that tenant;
    /// other policies keep one instance per target, as [`InstanceMode::PerTarget`].
    #[default]
    PerTenant,
    /// One instance per target, reused while its calls succeed and replaced after any failure.
    PerTarget,
    /// A fresh instance for every call.
    PerCall,
}

/// What `check` reports about a component.
#[derive(Debug, Clone)]
pub struct PolicyInfo {
    pub world: World,
    pub digest: Digest,
    pub size: usize,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// A compiled, linked and type-checked policy component. Cheap to clone.
#[derive(Clone)]
pub struct Policy {
    inner: Arc<PolicyInner>,
    /// The tenant whose targets may share this policy's instances, if any.
    tenant: Option<Arc<str>>,
}

struct PolicyInner {
    runtime: Runtime,
    info: PolicyInfo,
    pre: Pre,
    artifacts: Artifacts,
}

enum Pre {
    Predictor(PredictorPre<Sandbox>),
    Decider(DeciderPre<Sandbox>),
}

/// Policies still held somewhere, by digest; entries whose policy is gone are
/// swept once the map has doubled since the last sweep.
#[derive(Default)]
pub(super) struct Loaded(Mutex<(HashMap<Digest, Weak<PolicyInner>>, usize)>);

impl Loaded {
    /// The held policy of `digest`, shared by no tenant yet.
    pub(super) fn get(&self, digest: &Digest) -> Option<Policy> {
        let loaded = self.0.lock().expect("loaded policies lock");
        let inner = loaded.0.get(digest)?.upgrade()?;
        Some(Policy {
            inner,
            tenant: None,
        })
    }

    pub(super) fn insert(&self, policy: &Policy) {
        let mut loaded = self.0.lock().expect("loaded policies lock");
        let (map, swept_at) = &mut *loaded;
        map.insert(policy.digest(), Arc::downgrade(&policy.inner));
        if map.len() > (*swept_at * 2).max(64) {
            map.retain(|_, p| p.strong_count() > 0);
            *swept_at = map.len();
        }
    }
}

impl Policy {
    pub(super) fn new(
        runtime: Runtime,
        digest: Digest,
        size: usize,
        component: Component,
        artifacts: Artifacts,
    ) -> Result<Self, RuntimeError> {
        let ty = component.component_type();
        let engine = runtime.engine();
        let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        let world = if exports.iter().any(|e| e == "decide") {
            World::Decider
        } else if exports.iter().any(|e| e == "forecast") {
            World::Predictor
        } else {
            return Err(RuntimeError::WrongWorld(format!(
                "it exports neither `forecast` (predictor) nor `decide` (decider); its exports are [{}]",
                exports.join(", ")
            )));
        };

        let instance_pre = runtime
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| link_error(&e.to_string(), &imports))?;
        let wrong = |e: wasmtime::Error| {
            RuntimeError::WrongWorld(format!(
                "its exports do not match the {world} world of wit/: {e:#}"
            ))
        };
        let pre = match world {
            World::Predictor => Pre::Predictor(PredictorPre::new(instance_pre).map_err(wrong)?),
            World::Decider => Pre::Decider(DeciderPre::new(instance_pre).map_err(wrong)?),
        };
        Ok(Policy {
            inner: Arc::new(PolicyInner {
                runtime,
                info: PolicyInfo {
                    world,
                    digest,
                    size,
                    imports,
                    exports,
                },
                pre,
                artifacts,
            }),
            tenant: None,
        })
    }

    /// The same policy, whose instances the targets of `tenant` (a namespace) may share
    /// when the runtime pools instances; no other tenant's target ever gets one of them.
    pub fn shared_within(mut self, tenant: &str) -> Self {
        self.tenant = Some(Arc::from(tenant));
        self
    }

    /// Which world the component implements.
    pub fn world(&self) -> World {
        self.inner.info.world
    }

    /// The sha256 digest of the component's bytes.
    pub fn digest(&self) -> Digest {
        self.inner.info.digest
    }

    /// World, digest, size, imports and exports.
    pub fn info(&self) -> &PolicyInfo {
        &self.inner.info
    }

    /// Creates a fresh, sandboxed instance.
    pub fn instantiate(&self) -> Result<Instance, RuntimeError> {
        let runtime = &self.inner.runtime;
        let mut store = Store::new(
            runtime.engine(),
            Sandbox::new(runtime.config().limits.clone()),
        );
        store.data_mut().artifacts = Arc::clone(&self.inner.artifacts);
        store.limiter(|s| s as &mut dyn wasmtime::ResourceLimiter);
        store.epoch_deadline_trap();
        let running = runtime.arm(&mut store);
        let bound = match &self.inner.pre {
            Pre::Predictor(p) => p.instantiate(&mut store).map(Bound::Predictor),
            Pre::Decider(p) => p.instantiate(&mut store).map(Bound::Decider),
        };
        drop(running);
        let mut instance = Instance {
            policy: self.clone(),
            store,
            bound: None,
        };
        // Instantiation runs the guest's start code, so it fails like a call can.
        let bound = instance.classify(bound.map(Ok))?;
        instance.bound = Some(bound);
        Ok(instance)
    }
}

/// Maps a linker error to a message naming the import that is missing.
fn link_error(message: &str, imports: &[String]) -> RuntimeError {
    match imports.iter().find(|i| message.contains(&format!("`{i}`"))) {
        Some(name) if message.contains("not found") || message.contains("matching") => {
            RuntimeError::UnsupportedImport(name.clone())
        }
        _ => RuntimeError::Compile(message.to_string()),
    }
}

enum Bound {
    Predictor(Predictor),
    Decider(Decider),
}

/// One live instance of a policy, in its own store.
pub struct Instance {
    policy: Policy,
    store: Store<Sandbox>,
    bound: Option<Bound>,
}

impl Instance {
    /// The policy this instance runs.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Linear memory the instance holds now, all its memories together.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().memory_bytes
    }

    /// Calls the predictor's `forecast`, with no long history.
    pub fn forecast(
        &mut self,
        request: &ForecastRequest,
    ) -> Result<ForecastResponse, RuntimeError> {
        self.forecast_with(request, &LongHistory::default())
    }

    /// Calls the predictor's `forecast`; `long-history.get` answers from `long_history`.
    pub fn forecast_with(
        &mut self,
        request: &ForecastRequest,
        long_history: &LongHistory,
    ) -> Result<ForecastResponse, RuntimeError> {
        let out = match &self.bound {
            Some(Bound::Predictor(p)) => {
                let running = self.policy.inner.runtime.arm(&mut self.store);
                self.store.data_mut().long_history = Arc::clone(long_history);
                let out = p.call_forecast(&mut self.store, request);
                drop(running);
                // Dropped at once, so the pipeline appends without copying.
                self.store.data_mut().long_history = LongHistory::default();
                out
            }
            _ => return Err(self.not_a(World::Predictor)),
        };
        self.classify(out)
    }

    /// Calls the decider's `decide`.
    pub fn decide(&mut self, request: &DecideRequest) -> Result<Decision, RuntimeError> {
        let out = match &self.bound {
            Some(Bound::Decider(d)) => {
                let _running = self.policy.inner.runtime.arm(&mut self.store);
                d.call_decide(&mut self.store, request)
            }
            _ => return Err(self.not_a(World::Decider)),
        };
        self.classify(out)
    }

    /// Calls `validate-config`, whichever world the policy implements.
    pub fn validate_config(&mut self, config: &str) -> Result<(), RuntimeError> {
        let running = self.policy.inner.runtime.arm(&mut self.store);
        let out = match &self.bound {
            Some(Bound::Predictor(p)) => p.call_validate_config(&mut self.store, config),
            Some(Bound::Decider(d)) => d.call_validate_config(&mut self.store, config),
            None => unreachable!("an Instance is only handed out bound"),
        };
        drop(running);
        match self.classify(out) {
            Err(RuntimeError::Policy(m)) => Err(RuntimeError::Config(m)),
            other => other,
        }
    }

    fn not_a(&self, world: World) -> RuntimeError {
        RuntimeError::WrongWorld(format!(
            "the policy implements the {} world, not {world}",
            self.policy.world()
        ))
    }

    /// Turns a call's outcome into a typed error and forwards guest output to the log.
    fn classify<R>(&mut self, out: wasmtime::Result<Result<R, String>>) -> Result<R, RuntimeError> {
        self.forward_output();
        let sandbox = self.store.data_mut();
        let cap_hit = std::mem::take(&mut sandbox.memory_cap_hit);
        match out {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(message)) => Err(RuntimeError::Policy(message)),
            Err(e) => {
                let config = self.policy.inner.runtime.config();
                if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                    Err(RuntimeError::Timeout(config.deadline))
                } else if cap_hit {
                    Err(RuntimeError::MemoryCap(config.limits.memory_bytes))
                } else {
                    Err(RuntimeError::Trap(format!("{e:#}")))
                }
            }
        }
    }

    fn forward_output(&mut self) {
        let (lines, dropped) = self
            .store
            .data()
            .captured
            .lock()
            .expect("captured output lock")
            .take();
        let policy = self.policy.digest().short();
        for line in lines {
            let m = line.message;
            match line.level {
                LogLevel::Trace => tracing::trace!(policy, "{m}"),
                LogLevel::Debug => tracing::debug!(policy, "{m}"),
                LogLevel::Info => tracing::info!(policy, "{m}"),
                LogLevel::Warn => tracing::warn!(policy, "{m}"),
                LogLevel::Error => tracing::error!(policy, "{m}"),
            }
        }
        if dropped > 0 {
            tracing::warn!(
                policy,
                dropped_bytes = dropped,
                "policy output over the cap was dropped"
            );
        }
    }
}

/// Calls one policy on behalf of one target, keeping or renewing the
/// instance according to the runtime's [`InstanceMode`].
pub struct Session {
    policy: Policy,
    instance: Option<Instance>,
}

impl Session {
    /// A session that instantiates `policy` on its first call.
    pub fn new(policy: Policy) -> Self {
        Session {
            policy,
            instance: None,
        }
    }

    /// The policy this session calls.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Runs `call` on a live instance; the instance is kept (by the session, or
    /// in the pool for its tenant) only if the call succeeded and the runtime
    /// reuses instances.
    pub fn with<R>(
        &mut self,
        call: impl FnOnce(&mut Instance) -> Result<R, RuntimeError>,
    ) -> Result<R, RuntimeError> {
        let runtime = &self.policy.inner.runtime;
        let mode = runtime.config().instance_mode;
        let pooled_for = match mode {
            InstanceMode::PerTenant => self.policy.tenant.clone(),
            _ => None,
        };
        let taken = match &pooled_for {
            Some(tenant) => runtime.pool().take(tenant, self.policy.digest()),
            None => self.instance.take(),
        };
        let mut instance = match taken {
            Some(i) => i,
            None => self.policy.instantiate()?,
        };
        let out = call(&mut instance);
        if out.is_ok() {
            match (mode, pooled_for) {
                (InstanceMode::PerCall, _) => {}
                (_, Some(tenant)) => runtime.pool().put(tenant, instance),
                _ => self.instance = Some(instance),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeConfig;

    #[test]
    fn loads_of_a_held_digest_share_one_linked_policy_but_not_its_tenant() {
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let a = runtime
            .load_for("team-a", crate::bundled::HPA)
            .unwrap()
            .shared_within("team-a");
        let b = runtime.load_for("team-b", crate::bundled::HPA).unwrap();
        assert!(Arc::ptr_eq(&a.inner, &b.inner), "one link for one digest");
        assert_eq!(b.tenant, None, "a shared policy starts with no tenant");
        let other = runtime
            .load_for("team-a", crate::bundled::FORECAST)
            .unwrap();
        assert!(!Arc::ptr_eq(&a.inner, &other.inner));

        let weak = Arc::downgrade(&a.inner);
        drop((a, b));
        assert_eq!(
            weak.strong_count(),
            0,
            "the cache does not keep a policy alive"
        );
        let again = runtime.load_for("team-a", crate::bundled::HPA).unwrap();
        assert_eq!(
            again.digest(),
            Digest::of(crate::bundled::HPA),
            "linked again"
        );
    }
}
