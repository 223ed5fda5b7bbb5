//! One `coordination.k8s.io/v1` Lease, held the way every replica agrees on.
//!
//! A lease is taken over only after its record has stayed unchanged for a
//! whole lease duration as this replica observed it, so clock skew between
//! nodes cannot hand a lease to two holders. A write carries the
//! `resourceVersion` it read, so of two replicas writing at once one loses.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, ResourceExt};

/// Where the leases live and how they are held.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    /// Name of the lease (one shard), or the prefix of the shard and member leases.
    pub name: String,
    /// This replica's identity in the leases (its pod name).
    pub identity: String,
    /// How long a lease holds without renewal.
    pub duration: Duration,
    /// How often holders renew, and others look again.
    pub renew_every: Duration,
    /// How many shards the autoscalers are split into; every replica must agree.
    pub shards: u32,
}

/// Who a lease record says holds it, as this replica has observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// Nobody: never held, or released.
    Free,
    /// Renewed within its duration (as observed here).
    Live(String),
    /// Unchanged for a whole duration: its holder is gone.
    Expired(String),
}

impl Holding {
    /// Whether `identity` may write the lease as its holder now.
    pub fn open_to(&self, identity: &str) -> bool {
        match self {
            Holding::Free | Holding::Expired(_) => true,
            Holding::Live(holder) => holder == identity,
        }
    }
}

/// When each lease record was first seen unchanged, by lease name.
#[derive(Default)]
pub struct Observations {
    seen: HashMap<String, (Option<String>, Option<String>, Instant)>,
}

impl Observations {
    /// Notes `lease` as read now and says who holds it.
    pub fn observe(&mut self, lease: &Lease) -> Holding {
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.filter(|h| !h.is_empty());
        let renew = spec.renew_time.map(|t| t.0.to_string());
        let since = match self.seen.get(&lease.name_any()) {
            Some((h, r, since)) if (h, r) == (&holder, &renew) => *since,
            _ => Instant::now(),
        };
        self.seen
            .insert(lease.name_any(), (holder.clone(), renew, since));
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
        match holder {
            None => Holding::Free,
            Some(h) if since.elapsed() >= duration => Holding::Expired(h),
            Some(h) => Holding::Live(h),
        }
    }
}

/// A lease written with this replica as its holder.
#[derive(Debug, Clone, Copy)]
pub struct Taken {
    /// When the write was sent: the lease holds for its duration from then at the earliest.
    pub sent: Instant,
    /// The lease's transition count: unchanged since this replica last held it means
    /// no other replica held it in between.
    pub transitions: i32,
}

/// Writes `identity` as the holder of lease `name` (`current` is what was read of it, if
/// it exists), renewing it; labels and annotations are set as given. `None` when another
/// replica wrote first.
pub async fn take(
    api: &Api<Lease>,
    name: &str,
    current: Option<&Lease>,
    settings: &LeaseSettings,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
) -> Result<Option<Taken>, kube::Error> {
    let me = &settings.identity;
    let now = MicroTime(Timestamp::now());
    let seconds = settings.duration.as_secs().max(1) as i32;
    let sent = Instant::now();
    let Some(current) = current else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(me.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Some(Taken {
                sent,
                transitions: 0,
            })),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
            Err(e) => Err(e),
        };
    };
    let mut lease = current.clone();
    lease
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .extend(labels);
    lease
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .extend(annotations);
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(me) {
        spec.acquire_time = Some(now.clone());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.holder_identity = Some(me.clone());
    }
    spec.renew_time = Some(now);
    spec.lease_duration_seconds = Some(seconds);
    let transitions = spec.lease_transitions.unwrap_or(0);
    // The replace carries the resourceVersion read: if another replica wrote
    // in between, the server answers 409 and this replica loses.
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(Some(Taken { sent, transitions })),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Gives lease `name` up if `identity` holds it, so another replica can take it without
/// waiting for it to expire (a clean shutdown, a shard handed to a new replica).
pub async fn release(api: &Api<Lease>, name: &str, identity: &str) {
    let mut lease = match api.get_opt(name).await {
        Ok(Some(lease)) => lease,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(lease = name, error = %e, "could not read a lease to release it; it expires on its own");
            return;
        }
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(identity) {
        return;
    }
    spec.holder_identity = None;
    if let Err(e) = api.replace(name, &PostParams::default(), &lease).await {
        tracing::warn!(lease = name, error = %e, "could not release a lease; it expires on its own");
    }
}
