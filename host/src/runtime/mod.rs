//! The WebAssembly runtime: one shared wasmtime [`Engine`], components
//! compiled once per sha256 digest, and sandboxed policy instances with a
//! per-call deadline and a memory cap.
//!
//! Instance lifetime (see `docs/benchmarks.md` for the numbers behind it):
//! an instance is reused while its calls succeed; after any failed call
//! (trap, timeout, memory cap, error result) it is dropped and the next call
//! gets a fresh one. The operator's policies are shared within a namespace
//! ([`Policy::shared_within`]): their idle instances wait in a pool, under a
//! memory budget, for the next call of any target in that namespace and of
//! no other. Other policies keep one instance per target
//! ([`InstanceMode::PerTarget`]); [`InstanceMode::PerCall`] gives every call
//! a fresh instance.

mod artifacts;
pub mod bindings;
mod budget;
mod disk_cache;
mod epoch;
pub(crate) use disk_cache::{private_dir, write_atomically};
mod error;
mod isolate;
mod policy;
mod pool;
mod queue;
mod sandbox;
pub mod synthetic;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::Engine;

pub use artifacts::{pack, unpack, Artifacts, SECTION_PREFIX};
pub use budget::{CompileBudget, Shape};
pub use error::RuntimeError;
pub use isolate::{worker_main, WorkerCommand};
pub use policy::{Instance, InstanceMode, Policy, PolicyInfo, Session, World};
pub use pool::PoolLimits;
pub use sandbox::{GuestLine, Limits, LongHistory};

use disk_cache::DiskCache;
use epoch::{Running, Ticker, EPOCH_TICK};
use pool::InstancePool;
use queue::CompileQueue;
use sandbox::Sandbox;

/// Largest component accepted from any source (a file, or a ConfigMap value once decompressed).
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;
/// Digests whose compile was refused, remembered so the same bytes are not compiled again.
const MAX_REMEMBERED_REFUSALS: usize = 4096;

/// Settings of the runtime, with safe defaults.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Longest a single policy call may run before it is interrupted.
    pub deadline: Duration,
    /// Memory, table and output caps per instance.
    pub limits: Limits,
    /// Whether instances are shared within a tenant, reused per target or made fresh for each call.
    pub instance_mode: InstanceMode,
    /// How much idle guest memory the instance pool may keep.
    pub pool: PoolLimits,
    /// A folder for compiled components, so a restart does not recompile;
    /// none keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// What one component's compile may cost.
    pub compile_budget: CompileBudget,
    /// Where compiles run: a child process started with this command, which
    /// enforces the budget's CPU and memory limits; in this process when
    /// absent (then only the budget's size limits hold).
    pub compile_worker: Option<WorkerCommand>,
    /// How many compiles may run at once.
    pub compile_slots: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            deadline: Duration::from_millis(50),
            limits: Limits::default(),
            instance_mode: InstanceMode::PerTenant,
            pool: PoolLimits::default(),
            cache_dir: None,
            compile_budget: CompileBudget::default(),
            compile_worker: None,
            compile_slots: 1,
        }
    }
}

/// A sha256 digest of a component's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// Lowercase hex, as `sha256sum` prints it.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for logs.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

/// The shared engine, linker and compile cache. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<Sandbox>,
    config: RuntimeConfig,
    compiled: Mutex<HashMap<Digest, Component>>,
    /// Linked policies some target still holds, shared by every later load of their digest.
    loaded: policy::Loaded,
    /// One lock per digest being compiled, so it is compiled once.
    compiling: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
    /// Compile slots, shared fairly between tenants. Compiling an 18 MB
    /// Python or JavaScript policy takes ~350 MB for seconds (and already
    /// uses every core), so several at once would only add memory.
    compile_queue: CompileQueue,
    /// Idle instances of policies shared within a tenant.
    pool: InstancePool,
    /// Digests whose compile was refused, with the reason.
    refused: Mutex<HashMap<Digest, RuntimeError>>,
    /// Compiled components kept across restarts, when configured.
    disk: Option<DiskCache>,
    /// How many components were compiled (not taken from a cache).
    compilations: std::sync::atomic::AtomicU64,
    /// How many components were loaded from the disk cache.
    disk_hits: std::sync::atomic::AtomicU64,
    /// Advances the epoch while calls run, so their deadlines pass.
    ticker: Arc<Ticker>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

impl Runtime {
    /// Creates the engine and starts the epoch ticker that enforces deadlines.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let engine =
            Engine::new(&engine_config()).map_err(|e| RuntimeError::Compile(e.to_string()))?;

        let mut linker = Linker::<Sandbox>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError::Compile(format!("linking WASI: {e}")))?;
        bindings::predictor::wasm_autoscaler::policy::log::add_to_linker::<_, HasSelf<Sandbox>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| RuntimeError::Compile(format!("linking log: {e}")))?;
        bindings::model_predictor::wasm_autoscaler::policy::artifact::add_to_linker::<
            _,
            HasSelf<Sandbox>,
        >(&mut linker, |s| s)
        .map_err(|e| RuntimeError::Compile(format!("linking artifact: {e}")))?;
        bindings::history_predictor::wasm_autoscaler::policy::long_history::add_to_linker::<
            _,
            HasSelf<Sandbox>,
        >(&mut linker, |s| s)
        .map_err(|e| RuntimeError::Compile(format!("linking long-history: {e}")))?;

        let disk = match &config.cache_dir {
            Some(dir) => Some(DiskCache::open(dir, &engine)?),
            None => None,
        };
        let compile_slots = config.compile_slots;
        let pool = InstancePool::new(config.pool.clone());
        let ticker = Ticker::start(engine.weak());
        let inner = Arc::new(Inner {
            disk,
            disk_hits: Default::default(),
            engine,
            linker,
            config,
            compiled: Mutex::new(HashMap::new()),
            loaded: Default::default(),
            compiling: Mutex::new(HashMap::new()),
            compile_queue: CompileQueue::new(compile_slots),
            pool,
            refused: Mutex::new(HashMap::new()),
            compilations: Default::default(),
            ticker,
        });
        Ok(Runtime { inner })
    }

    /// The runtime's settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    fn pool(&self) -> &InstancePool {
        &self.inner.pool
    }

    /// Idle pooled instances and the linear memory they hold, in bytes.
    pub fn pooled(&self) -> (usize, usize) {
        self.inner.pool.usage()
    }

    /// The number of epoch ticks a call may run for.
    fn deadline_ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_micros();
        (self.inner.config.deadline.as_micros().div_ceil(tick) as u64).max(1) + 1
    }

    /// Gives `store` a call's deadline and keeps the epoch advancing until the
    /// returned guard is dropped; hold it for as long as guest code runs.
    fn arm<T>(&self, store: &mut wasmtime::Store<T>) -> Running {
        self.inner.ticker.arm(store, self.deadline_ticks())
    }

    /// Compiles `bytes`, or takes the compiled component from the cache when
    /// the same digest was compiled before, and links it against the sandbox.
    pub fn load(&self, bytes: &[u8]) -> Result<Policy, RuntimeError> {
        self.load_for("local", bytes)
    }

    /// [`Runtime::load`] on behalf of `tenant` (the namespace asking), whose
    /// compile waits its turn among tenants.
    pub fn load_for(&self, tenant: &str, bytes: &[u8]) -> Result<Policy, RuntimeError> {
        self.load_digested(tenant, Digest::of(bytes), bytes)
    }

    /// [`Runtime::load_for`] of `bytes` whose digest the caller computed.
    /// While any target holds a policy of that digest, the same linked policy
    /// is handed out again (it holds no guest memory: instances stay per
    /// tenant), so ten thousand targets of a policy hold one.
    pub(crate) fn load_digested(
        &self,
        tenant: &str,
        digest: Digest,
        bytes: &[u8],
    ) -> Result<Policy, RuntimeError> {
        if let Some(policy) = self.inner.loaded.get(&digest) {
            return Ok(policy);
        }
        let component = self.compile(tenant, digest, bytes)?;
        let policy = Policy::new(self.clone(), digest, bytes.len(), component, unpack(bytes))?;
        self.inner.loaded.insert(&policy);
        Ok(policy)
    }

    /// Compiles a component within the budget, caching the result by digest
    /// in memory (and on disk when configured). Concurrent requests for the
    /// same digest compile it once: the others wait. A refused digest is
    /// refused again at once.
    pub fn compile(
        &self,
        tenant: &str,
        digest: Digest,
        bytes: &[u8],
    ) -> Result<Component, RuntimeError> {
        if let Some(c) = self.cached(&digest) {
            return Ok(c);
        }
        if let Some(e) = self.refusal(&digest) {
            return Err(e);
        }
        let gate = Arc::clone(
            self.inner
                .compiling
                .lock()
                .expect("compile gate lock")
                .entry(digest)
                .or_default(),
        );
        let _one_at_a_time = gate.lock().expect("compile gate");
        if let Some(c) = self.cached(&digest) {
            return Ok(c);
        }
        if let Some(e) = self.refusal(&digest) {
            return Err(e);
        }
        let disk = self.inner.disk.as_ref();
        let component = match disk.and_then(|d| d.load(&self.inner.engine, &digest)) {
            Some(component) => {
                self.inner.disk_hits.fetch_add(1, Ordering::Relaxed);
                component
            }
            None => {
                let component = self.compile_new(tenant, bytes).inspect_err(|e| {
                    if e.is_lasting() {
                        self.remember_refusal(digest, e.clone());
                    }
                })?;
                if let Some(disk) = disk {
                    disk.store(&digest, &component);
                }
                component
            }
        };
        self.inner
            .compiled
            .lock()
            .expect("compile cache lock")
            .insert(digest, component.clone());
        Ok(component)
    }

    /// Checks what can be checked cheaply, then compiles in a slot of the
    /// fair queue: in a limited child process when configured.
    fn compile_new(&self, tenant: &str, bytes: &[u8]) -> Result<Component, RuntimeError> {
        if bytes.len() as u64 > MAX_COMPONENT_BYTES {
            return Err(RuntimeError::OverBudget(format!(
                "it is {} bytes, above the {} MiB limit",
                bytes.len(),
                MAX_COMPONENT_BYTES >> 20
            )));
        }
        check_header(bytes)?;
        let budget = &self.inner.config.compile_budget;
        Shape::of(bytes)?.check(budget)?;
        let _slot = self.inner.compile_queue.acquire(tenant);
        self.inner.compilations.fetch_add(1, Ordering::Relaxed);
        match &self.inner.config.compile_worker {
            None => Component::new(&self.inner.engine, bytes)
                .map_err(|e| RuntimeError::Compile(format!("{e:#}"))),
            Some(worker) => {
                let artifact = isolate::compile(worker, budget, bytes)?;
                deserialize_artifact(&self.inner.engine, &artifact)
            }
        }
    }

    fn refusal(&self, digest: &Digest) -> Option<RuntimeError> {
        self.inner
            .refused
            .lock()
            .expect("refusal cache lock")
            .get(digest)
            .cloned()
    }

    fn remember_refusal(&self, digest: Digest, error: RuntimeError) {
        let mut refused = self.inner.refused.lock().expect("refusal cache lock");
        // Bounded: past the cap the oldest knowledge is simply dropped.
        if refused.len() >= MAX_REMEMBERED_REFUSALS {
            refused.clear();
        }
        refused.insert(digest, error);
    }

    /// How many components this runtime compiled (cache hits not counted).
    pub fn compilations(&self) -> u64 {
        self.inner.compilations.load(Ordering::Relaxed)
    }

    /// How many components this runtime loaded from its disk cache.
    pub fn disk_hits(&self) -> u64 {
        self.inner.disk_hits.load(Ordering::Relaxed)
    }

    /// The compiled component for `digest`, if it is cached in memory.
    pub fn cached(&self, digest: &Digest) -> Option<Component> {
        self.inner
            .compiled
            .lock()
            .expect("compile cache lock")
            .get(digest)
            .cloned()
    }

    /// Drops every cached compilation (benchmarks use this to measure a cold compile).
    pub fn clear_cache(&self) {
        self.inner
            .compiled
            .lock()
            .expect("compile cache lock")
            .clear();
    }

    fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    fn linker(&self) -> &Linker<Sandbox> {
        &self.inner.linker
    }
}

/// The engine configuration, shared by the runtime and its compile workers
/// (an artifact only loads into an engine configured the same way).
pub(crate) fn engine_config() -> wasmtime::Config {
    let mut wasm = wasmtime::Config::new();
    wasm.wasm_component_model(true);
    wasm.epoch_interruption(true);
    wasm
}

/// Loads what a compile worker produced.
#[allow(unsafe_code)]
fn deserialize_artifact(engine: &Engine, artifact: &[u8]) -> Result<Component, RuntimeError> {
    // SAFETY: `Component::deserialize` trusts the bytes to be wasmtime's own
    // output. They come from a child process of this same binary, started by
    // `isolate::compile` with a cleared environment, that compiled the
    // component with this engine's configuration and wrote the artifact to a
    // pipe only this process reads; wasmtime itself refuses an artifact of
    // another version or configuration. Trusting it is trusting our own
    // compiler, as compiling in this process would.
    unsafe { Component::deserialize(engine, artifact) }
        .map_err(|e| RuntimeError::Compile(format!("loading the compiled component: {e:#}")))
}

/// Tells a text file or a core module from a component before wasmtime does,
/// because its own messages for these are cryptic.
fn check_header(bytes: &[u8]) -> Result<(), RuntimeError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(RuntimeError::NotWasm);
    }
    // Bytes 4..8: a core module has version 1 and layer 0; a component has layer 1.
    if bytes[6..8] == [0, 0] {
        return Err(RuntimeError::CoreModule);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_names_the_problem() {
        assert!(matches!(
            check_header(b"hello world"),
            Err(RuntimeError::NotWasm)
        ));
        let core = wat::parse_str("(module)").unwrap();
        assert!(matches!(check_header(&core), Err(RuntimeError::CoreModule)));
    }

    #[test]
    fn deadline_rounds_up_to_whole_ticks() {
        let rt = Runtime::new(RuntimeConfig {
            deadline: Duration::from_millis(7),
            ..RuntimeConfig::default()
        })
        .unwrap();
        // Two whole ticks cover 7 ms, and one more because the epoch may advance
        // just after a call starts, which cuts its first tick short.
        assert_eq!(rt.deadline_ticks(), 3);
    }

    #[test]
    fn digest_prints_like_sha256sum() {
        assert_eq!(
            Digest::of(b"").hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
