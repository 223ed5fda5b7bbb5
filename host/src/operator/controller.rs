//! The reconcile loop: every `interval`, each `WasmAutoscaler` is evaluated
//! once through the shared pipeline and the verdict applied to its target.
//!
//! One tick, top to bottom: check the spec → load the policies (keeping the
//! last good ones on failure) → refuse a target an HPA also scales → read the
//! target's scale and pods → fetch the metrics → evaluate (and the shadow
//! decider) → scale unless paused or dry-run → write status and Events.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};

use super::crd::{
    Checked, DecisionStatus, ForecastStatus, LoadedPolicy, PolicySource, WasmAutoscaler,
    WasmAutoscalerSpec, WasmAutoscalerStatus, PAUSE_ANNOTATION,
};
use super::evaluator::Evaluator;
use super::events::{EventType, Recorder};
use super::load_gate::{LoadGate, LoadPermit};
use super::pods::PodCache;
use super::policies::{self, LoadError};
use super::scales::{ScaleRead, ScaleWatch};
use super::shards::{Claim, Ownership};
use super::status::{self, Conditions, METRICS_AVAILABLE, POLICY_LOADED, READY, SCALING_LIMITED};
use super::target::{PodCounts, Resolver, Target};
use super::telemetry::Metrics;
use super::versions::{self, Versions};
use super::{Error, Settings};
use crate::boundary::credentials::{self, AdminCredentials, Auth, SecretCache, SecretSource};
use crate::boundary::files::FileRoots;
use crate::metrics::{Fetcher, MetricError, ScrapeState};
use crate::pipeline::{Observation, Pipeline, PolicySpec, TargetSpec, TickReport};
use crate::registry::{Registry, RegistrySettings};
use crate::runtime::{Digest, Runtime, World};
use crate::safety::{Limit, Proposal, Transition};

/// The label that makes a ConfigMap's changes reach its autoscalers at once
/// (without it, a changed policy is still picked up at the next tick).
pub const POLICY_LABEL: &str = "wasmautoscaler.dev/policy";

/// What every reconcile shares.
pub struct Context {
    client: Client,
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    resolver: Resolver,
    fetcher: Fetcher,
    targets: Mutex<HashMap<ObjectRef<WasmAutoscaler>, Arc<tokio::sync::Mutex<TargetState>>>>,
    /// Autoscalers whose policy ConfigMap changed since their last tick.
    dirty: Mutex<std::collections::HashSet<ObjectRef<WasmAutoscaler>>>,
    /// Watches the folders of `file` policy sources.
    files: super::files::FileWatch,
    /// Folders `file` sources may be read from.
    roots: FileRoots,
    /// Credentials the admin declared, by name.
    credentials: AdminCredentials,
    /// Secrets read for metric credentials and pull Secrets, per namespace.
    secrets: SecretCache,
    /// Bounds the component bytes policy loads hold, per namespace and in all.
    load_gate: LoadGate,
    /// Pulls `oci` policy sources.
    registry: Registry,
    /// The HorizontalPodAutoscalers the operator may see, kept by a watch (one per term).
    hpas: Mutex<Option<reflector::Store<HorizontalPodAutoscaler>>>,
    /// The pods the operator may see, kept by a watch (one per term).
    pods: Arc<PodCache>,
    /// The versions of the target kinds' objects, so unchanged scales are not read again (one per term).
    scales: Mutex<Option<Arc<ScaleWatch>>>,
    /// The versions of the labelled policy ConfigMaps, so unchanged ones are not read again (one per term).
    policy_maps: Mutex<Option<Arc<Versions>>>,
    /// The threads policy calls run on.
    evaluator: Evaluator,
    /// Asks the controller for a round now (a policy finished compiling, a shard was taken).
    wake: futures::channel::mpsc::UnboundedSender<()>,
    /// The other end of `wake`, taken by the running controller; a wake sent before it runs waits.
    woken: Mutex<Option<futures::channel::mpsc::UnboundedReceiver<()>>>,
    /// Which autoscalers this replica may act on.
    ownership: Arc<Ownership>,
    /// How old an unchanged decision in the status may grow before it is written again.
    status_refresh: Duration,
}

impl Context {
    /// A context for one operator replica.
    pub fn new(
        client: Client,
        runtime: Arc<Runtime>,
        metrics: Arc<Metrics>,
        ownership: Arc<Ownership>,
        settings: &Settings,
    ) -> Self {
        let (wake, woken) = futures::channel::mpsc::unbounded();
        Context {
            recorder: Recorder::new(client.clone(), "wasm-autoscaler", &settings.identity),
            client,
            runtime,
            metrics,
            resolver: Resolver::default(),
            fetcher: Fetcher::new(settings.metric_timeout, settings.egress.clone()),
            targets: Mutex::new(HashMap::new()),
            dirty: Mutex::new(Default::default()),
            wake,
            woken: Mutex::new(Some(woken)),
            ownership,
            hpas: Mutex::new(None),
            pods: Arc::default(),
            scales: Mutex::new(None),
            policy_maps: Mutex::new(None),
            evaluator: Evaluator::new(
                std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            ),
            status_refresh: settings.status_refresh,
            files: super::files::FileWatch::new(),
            roots: settings.file_roots.clone(),
            credentials: settings.credentials.clone(),
            secrets: SecretCache::default(),
            load_gate: LoadGate::default(),
            registry: Registry::new(&settings.registry, settings.egress.clone()).unwrap_or_else(
                |e| {
                    // Only the disk cache can fail; pulls still work without it.
                    tracing::warn!(error = %e, "cannot use the artifact cache; pulled policies are kept in memory only");
                    let memory_only = RegistrySettings {
                        cache_dir: None,
                        ..settings.registry.clone()
                    };
                    Registry::new(&memory_only, settings.egress.clone())
                        .expect("a registry without a disk cache builds")
                },
            ),
        }
    }

    fn state(&self, key: &ObjectRef<WasmAutoscaler>) -> Arc<tokio::sync::Mutex<TargetState>> {
        let mut targets = self.targets.lock().expect("targets lock");
        if let Some(state) = targets.get(key) {
            return Arc::clone(state);
        }
        let state = Arc::clone(targets.entry(key.clone()).or_default());
        self.metrics.set_owned(targets.len());
        state
    }

    fn mark_dirty(&self, key: ObjectRef<WasmAutoscaler>) {
        self.dirty.lock().expect("dirty lock").insert(key);
    }

    fn take_dirty(&self, key: &ObjectRef<WasmAutoscaler>) -> bool {
        let mut dirty = self.dirty.lock().expect("dirty lock");
        // Almost always empty: no need to hash the key.
        !dirty.is_empty() && dirty.remove(key)
    }

    /// The state of an autoscaler still known (none after it was forgotten).
    fn known_state(
        &self,
        key: &ObjectRef<WasmAutoscaler>,
    ) -> Option<Arc<tokio::sync::Mutex<TargetState>>> {
        self.targets.lock().expect("targets lock").get(key).cloned()
    }

    /// Reconciles `key` at once, policy changed, as a labelled ConfigMap's change does.
    fn wake(&self, key: ObjectRef<WasmAutoscaler>) {
        self.mark_dirty(key);
        self.wake_all();
    }

    /// Reconciles every autoscaler now: those of a shard just taken start evaluating.
    pub fn wake_all(&self) {
        let _ = self.wake.unbounded_send(());
    }

    /// Drops what this replica remembers of shard `shard`'s autoscalers (handed over).
    pub fn forget_shard(&self, shard: u32) {
        let mut targets = self.targets.lock().expect("targets lock");
        targets.retain(|key, _| {
            let namespace = key.namespace.as_deref().unwrap_or_default();
            self.ownership.shard_of(namespace, &key.name) != shard
        });
        self.metrics.set_owned(targets.len());
    }

    fn forget(&self, key: &ObjectRef<WasmAutoscaler>) {
        let mut targets = self.targets.lock().expect("targets lock");
        if targets.remove(key).is_some() {
            self.metrics.set_owned(targets.len());
        }
    }

    /// Counts a refusal of `namespace`'s input and warns on its object.
    async fn refuse(&self, obj: &WasmAutoscaler, kind: &'static str, note: String) {
        self.metrics
            .refusal(&obj.namespace().unwrap_or_default(), kind);
        self.event(obj, EventType::Warning, &reason_of(kind), note)
            .await;
    }

    async fn event(&self, obj: &WasmAutoscaler, type_: EventType, reason: &str, note: String) {
        if let Err(e) = self.recorder.publish(obj, type_, reason, &note).await {
            tracing::warn!(error = %e, reason, "could not publish an event");
        }
    }
}

/// How long a tick waits for a new version of a serving policy to compile
/// before it goes on with the serving one.
const SWAP_WAIT: Duration = Duration::from_millis(250);

/// How long a tick waits for the HorizontalPodAutoscaler watch's first list before it lists itself.
const HPA_WATCH_WAIT: Duration = Duration::from_secs(2);

/// Most long-history steps asked of Prometheus in one query.
const LONG_HISTORY_STEPS_PER_QUERY: u64 = 1440;

/// A loaded policy: role, source, config, digest.
type LoadedEntry = (&'static str, String, String, Digest);

/// What the operator remembers about one autoscaler between ticks.
#[derive(Default)]
struct TargetState {
    /// The term of the shard claim this state was built under.
    term: Option<u64>,
    generation: Option<i64>,
    /// The loaded policies.
    loaded: Vec<LoadedEntry>,
    /// The loaded policies as the status and the `PolicyLoaded` condition name them.
    loaded_status: Vec<LoadedPolicy>,
    loaded_message: String,
    /// The policies serving are those the spec names, as last read: nothing
    /// is compiling, refused or waiting for the load gate.
    settled: bool,
    /// The spec as checked, at the object's `resourceVersion`.
    checked: Option<(String, Arc<Result<Checked, String>>)>,
    /// Boxed: a pipeline is over 1 KiB, and most autoscalers have no shadow.
    pipeline: Option<Box<Pipeline>>,
    shadow: Option<Box<Pipeline>>,
    scrape: ScrapeState,
    /// The target's scale as last read, reused while the workload does not change.
    scale_read: Option<ScaleRead>,
    next_due: Option<Instant>,
    /// Whether the safety layer has been told about the target's past (a new leader).
    seeded: bool,
    /// Whether histories were filled from Prometheus' past.
    backfilled: bool,
    /// Per Prometheus metric, the end (Unix ms) of the newest long-history step asked for,
    /// under the step it was asked at.
    long_filled: HashMap<String, (u64, u64)>,
    /// Per Prometheus metric whose long-history query failed, when (Unix ms) to ask again.
    long_retry_at: HashMap<String, u64>,
    /// The last load failure reported, so it is reported once.
    rejected: Option<String>,
    /// Per role, the stamp and digest of the source contents serving.
    stamps: HashMap<&'static str, (String, Digest)>,
    /// Per role, the ConfigMap version its last stamp was read at.
    read_at: HashMap<&'static str, policies::ReadAt>,
    /// Source contents refused for good (until the spec changes), by role and stamp.
    refused: HashMap<(&'static str, String), LoadError>,
    /// Per role, the stamp of a new version compiling in the background while the old serves.
    compiling: HashMap<&'static str, String>,
    /// The file-change count last seen, to reload `file` sources when it moves.
    files_seen: u64,
    /// Metrics unavailable at the last tick, so loss is reported on change.
    unavailable: Vec<String>,
    hpa_conflict: Option<String>,
}

impl TargetState {
    /// `obj`'s spec as checked, checked again only when the object changed.
    fn checked(&mut self, obj: &WasmAutoscaler) -> Arc<Result<Checked, String>> {
        let version = obj.meta().resource_version.as_deref();
        if let Some((at, checked)) = &self.checked {
            if Some(at.as_str()) == version {
                return Arc::clone(checked);
            }
        }
        let checked = Arc::new(obj.spec.validate());
        self.checked = version.map(|v| (v.to_string(), Arc::clone(&checked)));
        checked
    }
}

/// Watches autoscalers (and labelled policy ConfigMaps) until `shutdown`.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    // A new term starts from what the cluster says, not from a previous term's memory.
    ctx.targets.lock().expect("targets lock").clear();
    let autoscalers: Api<WasmAutoscaler> = watched(&ctx.client, &namespace);
    let maps: Api<ConfigMap> = watched(&ctx.client, &namespace);
    // One watch of HorizontalPodAutoscalers instead of a LIST per autoscaler and tick.
    let hpa_api: Api<HorizontalPodAutoscaler> = watched(&ctx.client, &namespace);
    let (hpas, hpa_writer) = reflector::store();
    *ctx.hpas.lock().expect("hpa store lock") = Some(hpas);
    let hpa_watch = tokio::spawn(
        reflector::reflector(
            hpa_writer,
            watcher(hpa_api, watcher::Config::default()).default_backoff(),
        )
        .for_each(|event| async move {
            if let Err(e) = event {
                tracing::warn!(error = %e, "watching HorizontalPodAutoscalers failed; retrying");
            }
        }),
    );
    // One watch of pods instead of a LIST per autoscaler and tick.
    let pod_watch = ctx.pods.watch(watched(&ctx.client, &namespace));
    // Watches of the target kinds, started as targets of each kind are first read.
    *ctx.scales.lock().expect("scale watch lock") = Some(Arc::new(ScaleWatch::new(
        ctx.client.clone(),
        namespace.clone(),
    )));
    // The labelled ConfigMaps' versions, so a tick need not ask whether its policy changed.
    let map_versions = Arc::new(Versions::default());
    *ctx.policy_maps.lock().expect("policy map versions lock") = Some(Arc::clone(&map_versions));
    let map_watch = tokio::spawn(versions::watch(
        watched::<PartialObjectMeta<ConfigMap>>(&ctx.client, &namespace),
        watcher::Config::default().labels(POLICY_LABEL),
        "labelled policy ConfigMaps".to_string(),
        Arc::clone(&map_versions),
    ));
    let controller = Controller::new(autoscalers, watcher::Config::default().any_semantic());
    let woken = ctx
        .woken
        .lock()
        .expect("wake lock")
        .take()
        .expect("one controller runs per context");
    let store = controller.store();
    let marker = Arc::clone(&ctx);
    let ended = Arc::clone(&ctx);
    let file_changes = ctx.files.changes();
    controller
        .watches(
            maps,
            watcher::Config::default().labels(POLICY_LABEL),
            move |map: ConfigMap| {
                let ns = map.namespace();
                let name = map.name_any();
                let refs: Vec<_> = store
                    .state()
                    .into_iter()
                    .filter(|a| a.namespace() == ns && references(&a.spec, &name))
                    .map(|a| ObjectRef::from_obj(&*a))
                    .collect();
                // A changed policy is swapped in at once, not at the next tick.
                for r in &refs {
                    marker.mark_dirty(r.clone());
                }
                refs
            },
        )
        // A wake reaches every autoscaler (kube's per-object trigger is unstable);
        // those neither dirty nor due return at once.
        .reconcile_all_on(futures::stream::select(file_changes, woken))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile round ended with an error");
            }
        })
        .await;
    hpa_watch.abort();
    pod_watch.abort();
    map_watch.abort();
    map_versions.stop();
    ended
        .policy_maps
        .lock()
        .expect("policy map versions lock")
        .take();
    // Its watches end with it.
    ended.scales.lock().expect("scale watch lock").take();
}

/// The API of `K` in the watched namespace, or in all of them.
fn watched<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Phases are whole multiples of this within the interval: the autoscalers of
/// one slot are due at the same instant and run as one batch, so the async
/// workers wake once per slot instead of once per autoscaler.
const PHASE_SLOT_MS: u64 = 50;

/// When the tick after an autoscaler's first is due: about one interval on, at
/// the autoscaler's own phase within the interval (from its namespace and name,
/// against the wall clock), so objects created or taken over together do not
/// all tick together, and any replica ticks an object at the same phase.
fn phased(now: Instant, interval: Duration, namespace: &str, name: &str) -> Instant {
    let interval_ms = interval.as_millis().max(1) as u64;
    let digest = Digest::of(format!("{namespace}/{name}").as_bytes());
    let slots = (interval_ms / PHASE_SLOT_MS).max(1);
    let offset =
        u64::from_le_bytes(digest.0[..8].try_into().expect("8 bytes")) % slots * PHASE_SLOT_MS;
    let phase = Timestamp::now().as_millisecond().max(0) as u64 % interval_ms;
    let mut wait = (offset + interval_ms - phase) % interval_ms;
    if wait < interval_ms / 2 {
        wait += interval_ms;
    }
    now + Duration::from_millis(wait)
}

/// The next tick after one due at `due` that ran at `now`: at `due`'s phase (a
/// whole number of intervals from it), half to one and a half intervals on. A
/// late tick does not push the phase back, nor does an early one (a changed spec).
fn keep_phase(due: Instant, now: Instant, interval: Duration) -> Instant {
    let earliest = now + interval / 2;
    let step = interval.as_nanos().max(1);
    if due >= earliest {
        let back = (due - earliest).as_nanos() / step;
        due - interval * back as u32
    } else {
        let on = (earliest - due).as_nanos().div_ceil(step);
        due + interval * on as u32
    }
}

/// Every policy source of a spec.
fn sources(spec: &WasmAutoscalerSpec) -> impl Iterator<Item = &PolicySource> {
    [
        Some(&spec.decider),
        spec.predictor.as_ref(),
        spec.schedule.as_ref(),
        spec.shadow.as_ref(),
    ]
    .into_iter()
    .flatten()
}

fn uses_files(spec: &WasmAutoscalerSpec) -> bool {
    sources(spec).any(|s| s.file.is_some())
}

fn references(spec: &WasmAutoscalerSpec, map: &str) -> bool {
    sources(spec).any(|s| s.config_map_ref.as_ref().is_some_and(|r| r.name == map))
}

fn error_policy(obj: Arc<WasmAutoscaler>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_error(error.kind());
    tracing::warn!(
        namespace = obj.namespace().unwrap_or_default(),
        name = obj.name_any(),
        error = %error,
        "reconcile failed"
    );
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(obj: Arc<WasmAutoscaler>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(&*obj);
    if obj.meta().deletion_timestamp.is_some() {
        ctx.forget(&key);
        return Ok(Action::await_change());
    }
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let Some(claim) = ctx.ownership.owns(&namespace, &name) else {
        // Another replica's shard, or none held yet: taking a shard wakes every autoscaler.
        ctx.forget(&key);
        return Ok(Action::await_change());
    };
    let span = tracing::info_span!("tick", namespace = %namespace, name = %name);
    let state = ctx.state(&key);
    let mut state = state.lock().await;
    if state.term != Some(claim.term) {
        // Taken (again) under a new term: start from what the cluster says, not from
        // what this replica remembers from before another replica held it.
        *state = TargetState {
            term: Some(claim.term),
            ..TargetState::default()
        };
    }
    let checked = state.checked(&obj);
    let interval = checked
        .as_ref()
        .as_ref()
        .map_or(Duration::from_secs(30), |c| c.interval);
    let now = Instant::now();
    // Watch events (our own status writes among them) wake us between
    // ticks; only a due tick, or a changed spec, evaluates.
    let spec_changed = state.generation != obj.meta().generation;
    let files = ctx.files.count();
    let file_changed = state.files_seen != files && uses_files(&obj.spec);
    state.files_seen = files;
    let policy_changed = ctx.take_dirty(&key) || file_changed;
    if let Some(due) = state.next_due {
        if now < due && !spec_changed && !policy_changed {
            return Ok(Action::requeue(due - now));
        }
        ctx.metrics.lag(now.duration_since(due).as_secs_f64());
    }
    state.next_due = Some(match state.next_due {
        Some(due) => keep_phase(due, now, interval),
        None => phased(now, interval, &namespace, &name),
    });
    let tick = Tick {
        ctx: &ctx,
        obj: &obj,
        namespace: &namespace,
        claim,
        policy_changed,
        checked,
    };
    let result = tracing::Instrument::instrument(tick.run(&mut state), span).await;
    // Due one interval after this tick began, not after it ended, so ticks do not drift.
    let next = state.next_due.map_or(interval, |due| {
        due.saturating_duration_since(Instant::now())
    });
    result.map(|()| Action::requeue(next))
}

struct Tick<'a> {
    ctx: &'a Arc<Context>,
    obj: &'a WasmAutoscaler,
    namespace: &'a str,
    /// The shard this replica acts under; every write checks it still holds.
    claim: Claim,
    /// A change to the policy sources was announced: read them, whatever a watch says.
    policy_changed: bool,
    /// The spec, as checked.
    checked: Arc<Result<Checked, String>>,
}

impl Tick<'_> {
    async fn run(&self, state: &mut TargetState) -> Result<(), Error> {
        let stamp = Timestamp::now();
        let now_text = rfc3339(stamp);
        let none = WasmAutoscalerStatus::default();
        let previous = self.obj.status.as_ref().unwrap_or(&none);
        let generation = self.obj.meta().generation;
        let mut conditions = Conditions::new(&previous.conditions, now_text.clone(), generation);
        let mut status = WasmAutoscalerStatus {
            observed_generation: generation,
            last_scale_time: previous.last_scale_time.clone(),
            last_decision: previous.last_decision.clone(),
            shadow_decision: previous.shadow_decision.clone(),
            policies: previous.policies.clone(),
            owned_by: Some(self.ctx.ownership.identity().to_string()),
            shard: Some(self.claim.shard),
            ..WasmAutoscalerStatus::default()
        };

        let checked = match &*self.checked {
            Ok(c) => c,
            Err(message) => {
                let message = message.clone();
                conditions.set(READY, false, "InvalidSpec", message.clone());
                if conditions.transitions(READY) {
                    self.ctx.refuse(self.obj, "invalid_spec", message).await;
                }
                conditions.keep(POLICY_LOADED);
                return self.write_status(status, conditions).await;
            }
        };

        self.load_policies(state, checked, &mut conditions).await;
        state.generation = generation;
        if state.pipeline.is_none() {
            conditions.set(
                READY,
                false,
                "NoPolicy",
                "no policy has loaded yet; see the PolicyLoaded condition",
            );
            return self.write_status(status, conditions).await;
        }
        status.policies = state.loaded_status.clone();

        if let Some(hpa) = self.competing_hpa().await? {
            let message = format!(
                "HorizontalPodAutoscaler `{hpa}` also scales {}/{}; this autoscaler will not fight it: delete one of the two",
                self.obj.spec.scale_target_ref.kind, self.obj.spec.scale_target_ref.name
            );
            conditions.set(READY, false, "ConflictingHPA", message.clone());
            if state.hpa_conflict.as_deref() != Some(hpa.as_str()) {
                self.warn("ConflictingHPA", message).await;
                state.hpa_conflict = Some(hpa);
            }
            return self.write_status(status, conditions).await;
        }
        state.hpa_conflict = None;

        let target = match self
            .ctx
            .resolver
            .target(
                &self.ctx.client,
                self.namespace,
                &self.obj.spec.scale_target_ref,
            )
            .await
        {
            Ok(t) => t,
            Err(e) => {
                conditions.set(READY, false, "TargetUnknown", e.to_string());
                self.write_status(status, conditions).await?;
                return Err(e);
            }
        };
        let unchanged = state.scale_read.as_ref().and_then(|r| r.unchanged(&target));
        let scale = match unchanged {
            Some(s) => {
                self.ctx.metrics.scale_read(true);
                Ok(s)
            }
            None => {
                self.ctx.metrics.scale_read(false);
                let scales = self.ctx.scales.lock().expect("scale watch lock").clone();
                target.scale().await.map(|(view, version)| {
                    state.scale_read = scales
                        .zip(version)
                        .map(|(w, v)| w.read(&target, view.clone(), v));
                    view
                })
            }
        };
        let scale = match scale {
            Ok(s) => s,
            Err(e) => {
                conditions.set(READY, false, "TargetUnavailable", e.to_string());
                self.write_status(status, conditions).await?;
                return Err(e);
            }
        };
        let pods = match &scale.selector {
            Some(selector) => {
                // Only a metric that scrapes the target's own pods needs their addresses.
                let addresses = self
                    .obj
                    .spec
                    .metrics
                    .iter()
                    .any(|m| m.scrape.as_ref().is_some_and(|s| s.endpoints.is_empty()));
                target
                    .pods(&self.ctx.pods, selector, checked.warmup, stamp, addresses)
                    .await?
            }
            None => PodCounts {
                ready: scale.status_replicas,
                ..PodCounts::default()
            },
        };

        if !state.backfilled {
            self.backfill(state, checked).await;
        }
        self.fill_long_history(state, checked, stamp.as_millisecond().max(0) as u64)
            .await;
        let metrics = self.fetch_metrics(state, &pods, &mut conditions).await;
        let observation = Observation {
            now_ms: stamp.as_millisecond().max(0) as u64,
            current_replicas: scale.spec_replicas,
            ready_replicas: pods.ready,
            warming_replicas: pods.warming,
            metrics,
        };
        if !state.seeded {
            let last_scale_ms = previous
                .last_scale_time
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .map(|t| t.as_millisecond().max(0) as u64);
            if let Some(p) = state.pipeline.as_mut() {
                p.seed(observation.now_ms, scale.spec_replicas, last_scale_ms);
            }
            if let Some(p) = state.shadow.as_mut() {
                p.seed(observation.now_ms, scale.spec_replicas, last_scale_ms);
            }
            state.seeded = true;
        }

        let report = self.evaluate(&mut state.pipeline, &observation).await;
        self.count(&report, false, &state.loaded);
        status.current_replicas = Some(scale.spec_replicas);
        status.desired_replicas = Some(report.verdict.replicas);
        status.last_decision = Some(decision_status(&report, &now_text, checked));
        if state.shadow.is_some() {
            let shadow = self.evaluate(&mut state.shadow, &observation).await;
            self.count(&shadow, true, &state.loaded);
            status.shadow_decision = Some(decision_status(&shadow, &now_text, checked));
        } else {
            status.shadow_decision = None;
        }

        let paused = self
            .obj
            .annotations()
            .get(PAUSE_ANNOTATION)
            .is_some_and(|v| v == "true");
        let mode = if paused {
            Some((
                "Paused",
                format!("the {PAUSE_ANNOTATION} annotation is set"),
            ))
        } else if self.obj.spec.dry_run {
            Some(("DryRun", "spec.dryRun is set".to_string()))
        } else {
            None
        };
        let mut limits: Vec<String> = report.verdict.limits.iter().map(limit_name).collect();
        if report.scales() {
            match &mode {
                Some((why, _)) => {
                    limits.push((*why).into());
                    tracing::info!(
                        from = scale.spec_replicas,
                        to = report.verdict.replicas,
                        mode = why,
                        "would scale; not applied"
                    );
                }
                None => {
                    if let Err(message) = self.scale(state, &target, &report, checked).await {
                        conditions.set(READY, false, "ScaleFailed", message);
                        self.fill_limits(&mut conditions, &limits);
                        return self.write_status(status, conditions).await;
                    }
                    status.last_scale_time = Some(now_text.clone());
                }
            }
        }
        if let Some(decision) = status.last_decision.as_mut() {
            decision.limits = limits.clone();
        }
        match &mode {
            Some((why, message)) => conditions.set(
                READY,
                true,
                why,
                format!("deciding and reporting, never scaling: {message}"),
            ),
            None => conditions.set(
                READY,
                true,
                "Scaling",
                format!(
                    "evaluating {} every {}",
                    target.describe(),
                    self.obj.spec.interval
                ),
            ),
        }
        self.fill_limits(&mut conditions, &limits);
        self.write_status(status, conditions).await
    }

    fn fill_limits(&self, conditions: &mut Conditions<'_>, limits: &[String]) {
        if limits.is_empty() {
            conditions.set(
                SCALING_LIMITED,
                false,
                "WithinLimits",
                "the decision was applied as made",
            );
        } else {
            conditions.set(
                SCALING_LIMITED,
                true,
                &limits[0],
                format!("the decision was limited by: {}", limits.join(", ")),
            );
        }
    }

    /// Loads changed policy sources; a failure keeps the last good version serving.
    async fn load_policies(
        &self,
        state: &mut TargetState,
        checked: &Checked,
        conditions: &mut Conditions<'_>,
    ) {
        let spec = &self.obj.spec;
        if state.generation != self.obj.meta().generation {
            // A new spec (config, pin) may accept what the old one refused.
            state.refused.clear();
        }
        let roles: Vec<(&'static str, &PolicySource, World)> = [
            spec.predictor
                .as_ref()
                .map(|p| ("predictor", p, World::Predictor)),
            spec.schedule
                .as_ref()
                .map(|p| ("schedule", p, World::Predictor)),
            Some(("decider", &spec.decider, World::Decider)),
            spec.shadow.as_ref().map(|p| ("shadow", p, World::Decider)),
        ]
        .into_iter()
        .flatten()
        .collect();
        if self.nothing_to_load(state, &roles) {
            conditions.set(POLICY_LOADED, true, "Loaded", state.loaded_message.clone());
            return;
        }
        state.settled = false;
        let mut loaded = Vec::new();
        let mut specs: HashMap<&'static str, PolicySpec> = HashMap::new();
        let mut failure: Option<LoadError> = None;
        let mut pending = false;
        let mut stamps = HashMap::new();
        for (role, source, world) in &roles {
            // No reference to `state` may live across an await: pipelines are not `Sync`.
            let config = source.config_text();
            let describe = source.describe();
            let known = state.stamps.get(role).cloned();
            let skip: Vec<String> = known
                .iter()
                .map(|k| k.0.clone())
                .chain(state.compiling.get(role).cloned())
                .chain(
                    state
                        .refused
                        .keys()
                        .filter(|(r, _)| r == role)
                        .map(|(_, stamp)| stamp.clone()),
                )
                .collect();
            // With a version serving, a full gate means trying again next tick, not waiting.
            let serving = state.pipeline.is_some();
            let last = state.read_at.get(role).cloned();
            let fetched = match self.read(source, &skip, last.as_ref(), !serving).await {
                Ok(f) => f,
                Err(e) => {
                    if let Some(stamp) = e.refused_stamp() {
                        state.refused.insert((*role, stamp.to_string()), e.clone());
                    }
                    failure = Some(e);
                    break;
                }
            };
            if let Some(at) = &fetched.read_at {
                state.read_at.insert(*role, at.clone());
            }
            if fetched.busy || state.compiling.get(role) == Some(&fetched.stamp) {
                pending = true;
                break;
            }
            // The same contents refused before are refused again without compiling.
            if let Some(e) = state.refused.get(&(*role, fetched.stamp.clone())) {
                failure = Some(e.clone());
                break;
            }
            let digest = match (&fetched.bytes, &known) {
                (Some(bytes), _) => Digest::of(bytes),
                (None, Some((_, digest))) => *digest,
                (None, None) => unreachable!("only a known or refused stamp skips the read"),
            };
            let current = current_policy(state, role, &describe, &config, digest);
            let policy = match (current, fetched.bytes) {
                (Some(p), _) => p,
                (None, bytes) => {
                    // Unchanged contents under a changed spec (a new config): read them again,
                    // holding the gate's place while the bytes are held.
                    let (bytes, permit) = match bytes {
                        Some(b) => (b, None),
                        None => match self.read(source, &[], None, !serving).await {
                            Ok(again) if again.busy => {
                                pending = true;
                                break;
                            }
                            Ok(again) => {
                                (again.bytes.expect("an unknown stamp reads"), again.permit)
                            }
                            Err(e) => {
                                failure = Some(e);
                                break;
                            }
                        },
                    };
                    let mut loading = policies::spawn_load(
                        &self.ctx.runtime,
                        self.namespace,
                        source,
                        bytes,
                        *world,
                    );
                    let joined = if state.pipeline.is_some() {
                        // A slow compile must not cost the target its ticks: the version
                        // serving goes on, and the new one is swapped in once compiled.
                        match tokio::time::timeout(SWAP_WAIT, &mut loading).await {
                            Ok(joined) => joined,
                            Err(_) => {
                                let held = (fetched.permit, permit);
                                self.finish_in_background(role, &fetched.stamp, loading, held);
                                state.compiling.insert(role, fetched.stamp);
                                pending = true;
                                break;
                            }
                        }
                    } else {
                        loading.await
                    };
                    match joined.expect("policy loading does not panic") {
                        Ok(p) => p,
                        Err(e) => {
                            if e.is_lasting() {
                                // A few remembered per object are enough to stop recompiling.
                                if state.refused.len() >= 8 {
                                    state.refused.clear();
                                }
                                state
                                    .refused
                                    .insert((*role, fetched.stamp.clone()), e.clone());
                            }
                            failure = Some(e);
                            break;
                        }
                    }
                }
            };
            drop(fetched.permit);
            stamps.insert(*role, (fetched.stamp, digest));
            loaded.push((*role, describe, config, digest));
            specs.insert(*role, policy);
        }
        if pending {
            // Nothing changes until the new version has compiled; it wakes this autoscaler.
            conditions.keep(POLICY_LOADED);
            return;
        }
        if failure.is_none() {
            state.stamps = stamps;
        }
        if let Some(e) = failure {
            let message = e.to_string();
            let serving = if state.pipeline.is_some() {
                "; the last good version keeps serving"
            } else {
                ""
            };
            // A refusal by rule is named for the rule; any other failure is a `LoadFailed`.
            let reason = if e.is_refusal() {
                reason_of(e.kind())
            } else {
                "LoadFailed".to_string()
            };
            conditions.set(POLICY_LOADED, false, &reason, format!("{message}{serving}"));
            if state.rejected.as_deref() != Some(message.as_str()) {
                self.ctx.metrics.reload("rejected");
                let note = format!("{message}{serving}");
                if e.is_refusal() {
                    self.ctx.refuse(self.obj, e.kind(), note).await;
                } else {
                    self.warn("PolicyRejected", note).await;
                }
                state.rejected = Some(message);
            }
            return;
        }
        state.rejected = None;
        let changed = loaded != state.loaded || state.generation != self.obj.meta().generation;
        if changed {
            let decider = specs.remove("decider").expect("a decider is always loaded");
            let predictor = specs.remove("predictor");
            let schedule = specs.remove("schedule");
            let target_spec = |decider: PolicySpec| TargetSpec {
                min_replicas: spec.min_replicas,
                max_replicas: spec.max_replicas,
                interval_ms: checked.interval.as_millis() as u64,
                warmup_ms: checked.warmup.as_millis() as u64,
                history_len: spec.history as usize,
                long_history: checked.long_history.clone(),
                metrics: spec.metrics.iter().map(|m| m.name.clone()).collect(),
                predictor: predictor.clone(),
                schedule: schedule.clone(),
                decider,
                behavior: spec.behavior.clone(),
                zero: checked.zero.clone(),
            };
            let main = target_spec(decider);
            match state.pipeline.as_mut() {
                Some(p) => p.respec(main),
                None => state.pipeline = Some(Box::new(Pipeline::new(main))),
            }
            state.shadow = match (specs.remove("shadow"), state.shadow.take()) {
                (Some(s), Some(mut p)) => {
                    p.respec(target_spec(s));
                    Some(p)
                }
                (Some(s), None) => Some(Box::new(Pipeline::new(target_spec(s)))),
                (None, _) => None,
            };
            for (role, source, _, digest) in &loaded {
                if !state
                    .loaded
                    .iter()
                    .any(|(r, _, _, d)| r == role && d == digest)
                {
                    self.ctx.metrics.reload("loaded");
                    self.ctx
                        .event(
                            self.obj,
                            EventType::Normal,
                            "PolicyLoaded",
                            format!("{role} {digest} from {source}"),
                        )
                        .await;
                }
            }
            state.loaded = loaded;
            // What the status and the condition say changes only with the policies.
            state.loaded_status = state
                .loaded
                .iter()
                .map(|(role, source, _, digest)| LoadedPolicy {
                    role: (*role).into(),
                    source: source.clone(),
                    digest: digest.to_string(),
                })
                .collect();
            state.loaded_message = state
                .loaded
                .iter()
                .map(|(role, source, _, digest)| format!("{role}: {source} ({})", digest.short()))
                .collect::<Vec<_>>()
                .join(", ");
        }
        state.settled = true;
        conditions.set(POLICY_LOADED, true, "Loaded", state.loaded_message.clone());
    }

    /// Whether the policies serving are still those the spec names, known
    /// without reading a source: the common tick, which then loads nothing.
    fn nothing_to_load(
        &self,
        state: &TargetState,
        roles: &[(&'static str, &PolicySource, World)],
    ) -> bool {
        if !state.settled
            || self.policy_changed
            || state.generation != self.obj.meta().generation
            || state.pipeline.is_none()
        {
            return false;
        }
        let map_versions = self.map_versions();
        roles.iter().all(|(role, source, _)| {
            state.stamps.get(role).is_some_and(|(stamp, _)| {
                policies::known_unchanged(
                    source,
                    self.namespace,
                    stamp,
                    state.read_at.get(role),
                    map_versions.as_deref(),
                )
            })
        })
    }

    /// The labelled ConfigMaps' versions, unless a change was announced: then
    /// sources are read whatever the watch says.
    fn map_versions(&self) -> Option<Arc<Versions>> {
        if self.policy_changed {
            return None;
        }
        self.ctx
            .policy_maps
            .lock()
            .expect("policy map versions lock")
            .clone()
    }

    /// Lets a compile that outlived [`SWAP_WAIT`] finish without the tick,
    /// holding the load's place in the gate, then reconciles the autoscaler
    /// so the new version (compiled and cached by now) is swapped in at once.
    fn finish_in_background(
        &self,
        role: &'static str,
        stamp: &str,
        loading: tokio::task::JoinHandle<Result<PolicySpec, LoadError>>,
        held: (Option<LoadPermit>, Option<LoadPermit>),
    ) {
        let (ctx, key, stamp) = (
            Arc::clone(self.ctx),
            ObjectRef::from_obj(self.obj),
            stamp.to_string(),
        );
        tracing::info!(
            role,
            "the new policy compiles in the background; the serving one goes on"
        );
        tokio::spawn(async move {
            let _ = loading.await;
            drop(held);
            if let Some(state) = ctx.known_state(&key) {
                let mut state = state.lock().await;
                if state.compiling.get(role) == Some(&stamp) {
                    state.compiling.remove(role);
                }
            }
            ctx.wake(key);
        });
    }

    async fn competing_hpa(&self) -> Result<Option<String>, Error> {
        let ours = &self.obj.spec.scale_target_ref;
        let group = |api_version: &str| {
            api_version
                .split_once('/')
                .map_or("", |(g, _)| g)
                .to_string()
        };
        let competes = |h: &HorizontalPodAutoscaler| {
            let r = &h.spec.scale_target_ref;
            (r.kind == ours.kind
                && r.name == ours.name
                && group(r.api_version.as_deref().unwrap_or("")) == group(&ours.api_version))
            .then(|| h.name_any())
        };
        let store = self.ctx.hpas.lock().expect("hpa store lock").clone();
        if let Some(s) = store {
            // Ready once the watch's first list is in.
            let ready = tokio::time::timeout(HPA_WATCH_WAIT, s.wait_until_ready()).await;
            if matches!(ready, Ok(Ok(()))) {
                return Ok(s
                    .state()
                    .iter()
                    .filter(|h| h.namespace().as_deref() == Some(self.namespace))
                    .find_map(|h| competes(h)));
            }
        }
        // No watch yet (or it cannot list): ask the API server directly.
        let api: Api<HorizontalPodAutoscaler> =
            Api::namespaced(self.ctx.client.clone(), self.namespace);
        let hpas = api
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::Kube {
                action: "listing HorizontalPodAutoscalers".into(),
                source: e,
            })?;
        Ok(hpas.items.iter().find_map(competes))
    }

    /// Fills the histories from Prometheus' past so a restarted operator
    /// forecasts at once; a failure only means forecasting starts later.
    async fn backfill(&self, state: &mut TargetState, checked: &Checked) {
        let end = std::time::SystemTime::now() - checked.interval;
        let samples = self.obj.spec.history as usize - 1;
        for spec in &self.obj.spec.metrics {
            let points = match self.auth(spec).await {
                Ok(auth) => {
                    self.ctx
                        .fetcher
                        .backfill(spec, &auth, end, checked.interval, samples)
                        .await
                }
                Err(e) => Err(e),
            };
            match points {
                Ok(points) if !points.is_empty() => {
                    tracing::info!(metric = %spec.name, samples = points.len(), "history backfilled");
                    if let Some(p) = state.pipeline.as_mut() {
                        p.backfill(&spec.name, &points);
                    }
                    if let Some(p) = state.shadow.as_mut() {
                        p.backfill(&spec.name, &points);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(metric = %spec.name, error = %e, "history backfill failed")
                }
            }
        }
        state.backfilled = true;
    }

    /// Brings the long history of each Prometheus metric up to the newest
    /// step that has settled, from Prometheus: the whole window when the
    /// target is first evaluated (a restart, a new leader), then each step as
    /// it passes. Steps are aligned to the epoch, so the history is the same
    /// whichever replica asked. A failure is retried at the next tick.
    async fn fill_long_history(&self, state: &mut TargetState, checked: &Checked, now_ms: u64) {
        let Some(long) = &checked.long_history else {
            return;
        };
        let step = long.step_ms;
        // Samples reach Prometheus a scrape interval late: a step is asked for
        // once a minute (or a step, if shorter) has passed since its end.
        let settle = step.min(60_000);
        let newest = now_ms.saturating_sub(settle) / step * step;
        let oldest_wanted = newest.saturating_sub((long.points() as u64 - 1) * step);
        for spec in self
            .obj
            .spec
            .metrics
            .iter()
            .filter(|m| long.filled.contains(&m.name))
        {
            let from = match state.long_filled.get(&spec.name) {
                Some(&(s, last)) if s == step => (last + step).max(oldest_wanted),
                _ => oldest_wanted,
            };
            let backing_off = state
                .long_retry_at
                .get(&spec.name)
                .is_some_and(|at| now_ms < *at);
            if from > newest || backing_off {
                continue;
            }
            // A long window is filled over several ticks, so no answer nears the body limit
            // and a restart of many targets does not ask Prometheus for weeks at once.
            let to = newest.min(from + (LONG_HISTORY_STEPS_PER_QUERY - 1) * step);
            let resolution = checked.interval.max(Duration::from_millis(step / 15));
            let points = match self.auth(spec).await {
                Ok(auth) => {
                    self.ctx
                        .fetcher
                        .long_history(spec, &auth, from, to, step, resolution)
                        .await
                }
                Err(e) => Err(e),
            };
            match points {
                Ok(points) => {
                    tracing::debug!(metric = %spec.name, steps = points.len(), "long history filled");
                    for p in [state.pipeline.as_mut(), state.shadow.as_mut()]
                        .into_iter()
                        .flatten()
                    {
                        p.fill_long_history(&spec.name, &points);
                    }
                    state.long_filled.insert(spec.name.clone(), (step, to));
                    state.long_retry_at.remove(&spec.name);
                }
                Err(e) => {
                    // A query that cannot be averaged (a scalar) fails every time: ask again
                    // a step (at least a minute) later, not at every tick.
                    let retry_in = step.max(60_000);
                    tracing::warn!(metric = %spec.name, error = %e, retry_in_s = retry_in / 1000, "long history fill failed");
                    state
                        .long_retry_at
                        .insert(spec.name.clone(), now_ms + retry_in);
                }
            }
        }
    }

    async fn fetch_metrics(
        &self,
        state: &mut TargetState,
        pods: &PodCounts,
        conditions: &mut Conditions<'_>,
    ) -> Vec<(String, Option<f64>)> {
        let mut values = Vec::new();
        let mut problems = Vec::new();
        let mut refusal = None;
        for spec in &self.obj.spec.metrics {
            let fetched = match self.auth(spec).await {
                Ok(auth) => {
                    self.ctx
                        .fetcher
                        .fetch(spec, &auth, &pods.endpoints, &mut state.scrape)
                        .await
                }
                Err(e) => Err(e),
            };
            match fetched {
                Ok(v) => values.push((spec.name.clone(), Some(v))),
                Err(e) => {
                    self.ctx.metrics.metric_error(
                        self.namespace,
                        &self.obj.name_any(),
                        &spec.name,
                        e.kind(),
                    );
                    tracing::warn!(metric = %spec.name, error = %e, "metric unavailable");
                    if let Some(remote) = e.remote_detail() {
                        tracing::debug!(metric = %spec.name, remote, "what the server answered");
                    }
                    if e.is_refusal() && refusal.is_none() {
                        refusal = Some(e.kind());
                    }
                    problems.push((spec.name.clone(), e.to_string()));
                    values.push((spec.name.clone(), None));
                }
            }
        }
        let names: Vec<String> = problems.iter().map(|(n, _)| n.clone()).collect();
        if problems.is_empty() {
            conditions.set(
                METRICS_AVAILABLE,
                true,
                "Fetched",
                "every metric had a usable value",
            );
        } else {
            let message = problems
                .iter()
                .map(|(n, e)| format!("{n}: {e}"))
                .collect::<Vec<_>>()
                .join("; ");
            let reason = refusal.map_or_else(|| "Unavailable".to_string(), reason_of);
            conditions.set(METRICS_AVAILABLE, false, &reason, message.clone());
            if names != state.unavailable {
                match refusal {
                    Some(kind) => self.ctx.refuse(self.obj, kind, message).await,
                    None => self.warn("MetricsUnavailable", message).await,
                }
            }
        }
        state.unavailable = names;
        values
    }

    /// Reads a policy source within the load gate; nothing when its stamp is `known`.
    async fn read(
        &self,
        source: &PolicySource,
        known: &[String],
        last: Option<&policies::ReadAt>,
        wait_for_gate: bool,
    ) -> Result<policies::Fetched, LoadError> {
        let map_versions = self.map_versions();
        let access = policies::SourceAccess {
            client: &self.ctx.client,
            namespace: self.namespace,
            roots: &self.ctx.roots,
            registry: &self.ctx.registry,
            secrets: &self.ctx.secrets,
            gate: &self.ctx.load_gate,
            wait_for_gate,
            map_versions: map_versions.as_deref(),
        };
        let fetched = policies::read(&access, source, known, last).await?;
        // Read, so inside the admin's roots: only such folders are ever watched.
        if let Some(path) = &source.file {
            self.ctx.files.watch(path);
        }
        Ok(fetched)
    }

    /// The credentials a metric's requests carry: from a Secret in this
    /// namespace or an admin-declared credential, never from a file a spec names.
    async fn auth(&self, spec: &crate::operator::crd::MetricSpec) -> Result<Auth, MetricError> {
        let Some(p) = &spec.prometheus else {
            return Ok(Auth::default());
        };
        let secrets = SecretSource::Cluster {
            client: &self.ctx.client,
            namespace: self.namespace,
            cache: &self.ctx.secrets,
        };
        Ok(credentials::resolve(p, &secrets, &self.ctx.credentials).await?)
    }

    /// Runs the policies on the policy threads: a call may take up to the deadline.
    async fn evaluate(&self, slot: &mut Option<Box<Pipeline>>, obs: &Observation) -> TickReport {
        let mut pipeline = slot.take().expect("evaluated only with a pipeline");
        let obs = obs.clone();
        let started = Instant::now();
        // The policies' own log lines keep the object's namespace and name.
        let span = tracing::Span::current();
        let (pipeline, report) = self
            .ctx
            .evaluator
            .run(move || {
                let _entered = span.enter();
                let report = pipeline.evaluate(&obs);
                (pipeline, report)
            })
            .await;
        self.ctx.metrics.evaluation(started.elapsed().as_secs_f64());
        *slot = Some(pipeline);
        report
    }

    fn count(&self, report: &TickReport, shadow: bool, loaded: &[LoadedEntry]) {
        for (role, kind) in &report.failures {
            let role = if shadow && *role == "decider" {
                "shadow"
            } else {
                *role
            };
            let digest = loaded
                .iter()
                .find(|(r, ..)| *r == role)
                .map(|(.., d)| d.to_string())
                .unwrap_or_default();
            tracing::warn!(role, kind, %digest, "policy call failed");
            if !shadow {
                self.ctx.metrics.policy_failure(role, kind);
            }
        }
        let outcome = match (
            &report.proposal,
            report.verdict.replicas.cmp(&report.current_replicas),
        ) {
            (Proposal::Failed(_), _) => "failed",
            (_, std::cmp::Ordering::Greater) => "scale_up",
            (_, std::cmp::Ordering::Less) => "scale_down",
            _ => "hold",
        };
        self.ctx.metrics.decision(outcome, shadow);
    }

    /// Applies the verdict, retrying conflicts and server errors with backoff.
    async fn scale(
        &self,
        state: &mut TargetState,
        target: &Target<'_>,
        report: &TickReport,
        checked: &Checked,
    ) -> Result<(), String> {
        let to = report.verdict.replicas;
        let from = report.current_replicas;
        let backoff = &self.obj.spec.behavior.backoff;
        let give_up_at = Instant::now() + checked.interval;
        // Whatever the write does, the next tick reads the scale again.
        state.scale_read = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(held) = self.ctx.ownership.hold(self.claim).await else {
                return Err(format!(
                    "not scaled from {from} to {to}: this replica no longer owns the autoscaler's shard"
                ));
            };
            let sent = target.set_replicas(to).await;
            drop(held);
            match sent {
                Ok(()) => break,
                Err(e) => {
                    let retriable = matches!(&e, kube::Error::Api(s) if s.code == 409 || s.code == 429 || s.code >= 500)
                        || !matches!(&e, kube::Error::Api(_));
                    let wait = backoff.delay(attempt);
                    if !retriable
                        || attempt >= backoff.attempts.max(1)
                        || Instant::now() + wait >= give_up_at
                    {
                        let message = format!(
                            "scaling {} from {from} to {to} failed after {attempt} attempt(s): {e}",
                            target.describe()
                        );
                        tracing::warn!(%message);
                        self.warn("ScaleFailed", message.clone()).await;
                        return Err(message);
                    }
                    tracing::info!(attempt, error = %e, wait_ms = wait.as_millis() as u64, "scale request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        if let Some(p) = state.pipeline.as_mut() {
            p.record_action(report.now_ms);
        }
        let up = to > from;
        self.ctx.metrics.scale_action(up);
        tracing::info!(from, to, reason = %report.reason, "scaled");
        // A move to or from zero is named for what caused it.
        let (reason, why) = match &report.verdict.transition {
            Some(t @ Transition::Activated { .. }) => ("Activated", t.to_string()),
            Some(t @ Transition::Idled { .. }) => ("Idled", t.to_string()),
            None => (
                if up { "ScaledUp" } else { "ScaledDown" },
                report.reason.clone(),
            ),
        };
        self.ctx
            .event(
                self.obj,
                EventType::Normal,
                reason,
                format!("{} from {from} to {to}: {why}", target.describe()),
            )
            .await;
        Ok(())
    }

    async fn warn(&self, reason: &str, note: String) {
        self.ctx
            .event(self.obj, EventType::Warning, reason, note)
            .await;
    }

    async fn write_status(
        &self,
        status: WasmAutoscalerStatus,
        conditions: Conditions<'_>,
    ) -> Result<(), Error> {
        let status = WasmAutoscalerStatus {
            conditions: conditions.finish(),
            ..status
        };
        let none = WasmAutoscalerStatus::default();
        if !status::worth_writing(
            self.obj.status.as_ref().unwrap_or(&none),
            &status,
            Timestamp::now(),
            self.ctx.status_refresh,
        ) {
            self.ctx.metrics.status_write(false);
            return Ok(());
        }
        let Some(_held) = self.ctx.ownership.hold(self.claim).await else {
            // The shard moved on; its new owner writes the status.
            return Ok(());
        };
        self.ctx.metrics.status_write(true);
        let api: Api<WasmAutoscaler> = Api::namespaced(self.ctx.client.clone(), self.namespace);
        // A merge patch of the status alone: spec edits made meanwhile are untouched.
        let patch = status::merge_patch(&status);
        api.patch_status(
            &self.obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| Error::Kube {
            action: "writing the status".into(),
            source: e,
        })?;
        Ok(())
    }
}

fn decision_status(report: &TickReport, now: &str, checked: &Checked) -> DecisionStatus {
    let horizon_ms = report.now_ms as f64 + checked.warmup.max(checked.interval).as_millis() as f64;
    DecisionStatus {
        time: now.into(),
        proposed_replicas: match report.proposal {
            Proposal::Desired(d) => Some(d),
            Proposal::Failed(_) => None,
        },
        desired_replicas: report.verdict.replicas,
        reason: report.reason.clone(),
        limits: report.verdict.limits.iter().map(limit_name).collect(),
        transition: report.verdict.transition.as_ref().map(ToString::to_string),
        forecast: report
            .forecasts
            .iter()
            .filter_map(|f| {
                // The point nearest the horizon the decider sized for.
                let p = f.points.iter().min_by(|a, b| {
                    (a.time_ms - horizon_ms)
                        .abs()
                        .total_cmp(&(b.time_ms - horizon_ms).abs())
                })?;
                Some(ForecastStatus {
                    metric: f.name.clone(),
                    horizon_seconds: ((p.time_ms - report.now_ms as f64) / 1000.0 * 1000.0).round()
                        / 1000.0,
                    value: (p.value * 1000.0).round() / 1000.0,
                })
            })
            .collect(),
    }
}

/// The policy already serving `role`, when its source, config and digest are unchanged.
fn current_policy(
    state: &TargetState,
    role: &str,
    source: &str,
    config: &str,
    digest: Digest,
) -> Option<PolicySpec> {
    state
        .loaded
        .iter()
        .find(|(r, s, c, d)| *r == role && s == source && c == config && *d == digest)?;
    let pipeline = if role == "shadow" {
        state.shadow.as_ref()
    } else {
        state.pipeline.as_ref()
    }?;
    let spec = pipeline.spec();
    match role {
        "predictor" => spec.predictor.clone(),
        "schedule" => spec.schedule.clone(),
        _ => Some(spec.decider.clone()),
    }
}

/// The condition and Event reason of a refusal kind: `egress_denied` → `EgressDenied`.
fn reason_of(kind: &str) -> String {
    kind.split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

fn limit_name(limit: &Limit) -> String {
    format!("{limit:?}")
}

fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_ticks_spread_over_the_interval_and_come_half_to_one_and_a_half_intervals_on() {
        let interval = Duration::from_secs(15);
        let now = Instant::now();
        let mut tenths = [0usize; 10];
        for i in 0..1000 {
            let wait = phased(now, interval, "default", &format!("w{i}")) - now;
            assert!(wait >= interval / 2 && wait < interval * 3 / 2, "{wait:?}");
            // Where in the interval the object ticks from now on.
            let phase =
                (Timestamp::now().as_millisecond() as u64 + wait.as_millis() as u64) % 15_000;
            tenths[(phase / 1500) as usize] += 1;
        }
        // 1,000 objects, about 100 in each tenth of the interval.
        assert!(tenths.iter().all(|n| (50..150).contains(n)), "{tenths:?}");
        // The same object keeps its phase.
        let a = phased(now, interval, "default", "web") - now;
        let b = phased(now, interval, "default", "web") - now;
        assert!(a.abs_diff(b) < Duration::from_millis(50));
        // Phases fall on slots: many objects share one due instant. (Each call reads
        // the clocks afresh, as each tick does, so a slow loop does not smear a slot.)
        let mut due: Vec<Instant> = (0..3000)
            .map(|i| phased(Instant::now(), interval, "default", &format!("w{i}")))
            .collect();
        due.sort();
        due.dedup_by(|a, b| a.duration_since(*b) < Duration::from_millis(5));
        assert!(
            due.len() <= 15_000 / PHASE_SLOT_MS as usize + 1,
            "{}",
            due.len()
        );
    }

    #[test]
    fn ticks_keep_their_phase_whether_late_or_early() {
        let interval = Duration::from_secs(15);
        let due = Instant::now() + Duration::from_secs(100);
        let ms = Duration::from_millis;
        // On time, and a little late: one interval after the due instant, not after `now`.
        assert_eq!(keep_phase(due, due, interval), due + interval);
        assert_eq!(keep_phase(due, due + ms(40), interval), due + interval);
        // So late that one interval on is less than half an interval away: the one after.
        assert_eq!(
            keep_phase(due, due + ms(9_000), interval),
            due + interval * 2
        );
        // Early (a changed spec): the due tick stays if it is half an interval away or more.
        assert_eq!(keep_phase(due, due - ms(12_000), interval), due);
        assert_eq!(keep_phase(due, due - ms(3_000), interval), due + interval);
        // Always half to one and a half intervals on.
        for offset_ms in (0..60_000).step_by(777) {
            let now = due - ms(30_000) + ms(offset_ms);
            let next = keep_phase(due, now, interval);
            assert!(next >= now + interval / 2 && next < now + interval * 3 / 2);
        }
    }
}
