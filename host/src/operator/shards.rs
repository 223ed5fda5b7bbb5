//! Sharding across operator replicas: the autoscalers are split into a fixed
//! number of shards by a hash of their namespace and name, each shard is held
//! through its own Lease, and the live replicas share the shards evenly.
//!
//! Every replica renews a member Lease, so all of them know who is alive, and
//! computes the same assignment of shards to live members. It takes the free or
//! expired shards assigned to it and hands back (stops, then releases) the ones
//! assigned elsewhere. With one shard this is plain leader election.
//!
//! Two replicas never act on one autoscaler at once: a replica counts a shard
//! as its own only until one lease duration (less a margin) after it last sent
//! a renewal, while another replica takes a lease over only after seeing it
//! unchanged for a whole duration; and a shard handed over is released only
//! after the scale and status writes in flight under it have finished.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{DeleteParams, ListParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use sha2::{Digest as _, Sha256};

use super::lease::{self, Holding, LeaseSettings, Observations};
use super::telemetry::Metrics;
use crate::runtime::Digest;

/// Label naming the set a lease belongs to (the `--lease-name`).
pub const LEASE_SET_LABEL: &str = "wasmautoscaler.dev/lease-set";
/// Annotation on a member lease: the shard count its replica runs with.
pub const SHARDS_ANNOTATION: &str = "wasmautoscaler.dev/shards";

/// Which shards this replica may act on, and until when.
pub struct Ownership {
    identity: String,
    /// Without leases, this replica owns every autoscaler.
    everything: bool,
    shards: Vec<Slot>,
    terms: AtomicU64,
}

struct Slot {
    held: Mutex<Option<Held>>,
    /// Writes under the shard hold it shared; a hand-over waits for them.
    gate: tokio::sync::RwLock<()>,
}

#[derive(Clone, Copy)]
struct Held {
    until: Instant,
    term: u64,
    /// The lease's transition count when this replica took it.
    transitions: i32,
}

/// A shard this replica took or handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Gained(u32),
    Lost(u32),
}

/// An autoscaler's shard and the term this replica holds it under: a new term
/// (the shard lost and taken again) means the autoscaler starts afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub shard: u32,
    pub term: u64,
}

impl Ownership {
    /// A replica that owns every autoscaler (no leader election).
    pub fn everything(identity: &str) -> Self {
        let mut o = Self::sharded(identity, 1);
        o.everything = true;
        o
    }

    /// A replica that owns the shards (of `count`) it holds leases for; none yet.
    pub fn sharded(identity: &str, count: u32) -> Self {
        Ownership {
            identity: identity.into(),
            everything: false,
            shards: (0..count.max(1))
                .map(|_| Slot {
                    held: Mutex::new(None),
                    gate: tokio::sync::RwLock::new(()),
                })
                .collect(),
            terms: AtomicU64::new(1),
        }
    }

    /// This replica's identity, as the status names the owner.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// How many shards there are.
    pub fn count(&self) -> u32 {
        self.shards.len() as u32
    }

    /// The shard of an autoscaler: the same on every replica with the same count.
    pub fn shard_of(&self, namespace: &str, name: &str) -> u32 {
        shard_of(namespace, name, self.count())
    }

    /// The claim on an autoscaler, if this replica owns it now.
    pub fn owns(&self, namespace: &str, name: &str) -> Option<Claim> {
        let shard = self.shard_of(namespace, name);
        if self.everything {
            return Some(Claim { shard, term: 0 });
        }
        self.valid(shard).map(|held| Claim {
            shard,
            term: held.term,
        })
    }

    /// Whether shard `shard` is held now.
    pub fn holds(&self, shard: u32) -> bool {
        self.everything || self.valid(shard).is_some()
    }

    /// The hold on `shard`, if it has not lapsed.
    fn valid(&self, shard: u32) -> Option<Held> {
        let held = (*self.shards[shard as usize].held.lock().expect("shard lock"))?;
        (Instant::now() < held.until).then_some(held)
    }

    /// A guard to write under `claim`, or `None` when the claim no longer holds.
    /// A hand-over of the shard waits until the guard is dropped.
    pub async fn hold(&self, claim: Claim) -> Option<tokio::sync::RwLockReadGuard<'_, ()>> {
        let slot = &self.shards[claim.shard as usize];
        let guard = slot.gate.read().await;
        if self.everything {
            return Some(guard);
        }
        let held = self.valid(claim.shard)?;
        (held.term == claim.term).then_some(guard)
    }

    /// Records that `shard` is held until `until`, its lease at `transitions`; true when
    /// this starts a new term. A claim that lapsed here (a late renewal) resumes its
    /// term when the lease's transitions show no other replica held it meanwhile:
    /// the autoscalers keep what they remember.
    fn grant(&self, shard: u32, until: Instant, transitions: i32) -> bool {
        let mut held = self.shards[shard as usize].held.lock().expect("shard lock");
        match held.as_mut() {
            Some(h) if Instant::now() < h.until || h.transitions == transitions => {
                h.until = h.until.max(until);
                h.transitions = transitions;
                false
            }
            _ => {
                let term = self.terms.fetch_add(1, Ordering::Relaxed);
                *held = Some(Held {
                    until,
                    term,
                    transitions,
                });
                true
            }
        }
    }

    /// Stops acting on `shard` and waits for the writes in flight under it.
    async fn revoke(&self, shard: u32) {
        self.stop(shard);
        self.drained(shard).await;
    }

    /// Stops acting on `shard`: no write under it starts from now on, and a later
    /// grant starts a new term.
    fn stop(&self, shard: u32) {
        *self.shards[shard as usize].held.lock().expect("shard lock") = None;
    }

    /// Waits for the writes in flight under `shard` to finish.
    async fn drained(&self, shard: u32) {
        drop(self.shards[shard as usize].gate.write().await);
    }
}

/// The shard of autoscaler `namespace/name` among `count`.
pub fn shard_of(namespace: &str, name: &str, count: u32) -> u32 {
    // The digest of `namespace/name`, hashed in parts: every tick asks.
    let digest = Sha256::new()
        .chain_update(namespace)
        .chain_update("/")
        .chain_update(name)
        .finalize();
    // Bytes 8..16: the tick phase uses 0..8, and the two should not correlate.
    let h = u64::from_le_bytes(digest[8..16].try_into().expect("8 bytes"));
    (h % u64::from(count.max(1))) as u32
}

/// The lease of shard `shard` of `count`: with one shard, the leader lease itself.
pub fn shard_lease_name(prefix: &str, shard: u32, count: u32) -> String {
    if count <= 1 {
        prefix.to_string()
    } else {
        format!("{prefix}-{shard}-of-{count}")
    }
}

/// The member lease of replica `identity` (a pod name may be long; the lease
/// name is a digest of it, and the lease's holder says who it is).
fn member_lease_name(prefix: &str, identity: &str) -> String {
    format!(
        "{prefix}-member-{}",
        Digest::of(identity.as_bytes()).short()
    )
}

/// Which member each shard belongs to: every member gets `count / members` shards
/// or one more, and a shard goes to the member that ranks it highest (by a hash of
/// both) among those with room, so most shards stay put when a member comes or goes.
pub fn assign(count: u32, members: &[String]) -> Vec<usize> {
    if members.is_empty() {
        return Vec::new();
    }
    let floor = count as usize / members.len();
    let mut load = vec![0usize; members.len()];
    let mut owner: Vec<Option<usize>> = vec![None; count as usize];
    let ranked = |shard: u32| {
        let mut order: Vec<(u64, usize)> = members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let d = Digest::of(format!("{shard}/{m}").as_bytes());
                (u64::from_le_bytes(d.0[..8].try_into().expect("8 bytes")), i)
            })
            .collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        order
    };
    // First everyone up to the floor, then the remainder one each.
    for cap in [floor, floor + 1] {
        for shard in 0..count {
            if owner[shard as usize].is_some() {
                continue;
            }
            if let Some(&(_, i)) = ranked(shard).iter().find(|(_, i)| load[*i] < cap) {
                owner[shard as usize] = Some(i);
                load[i] += 1;
            }
        }
    }
    owner
        .into_iter()
        .map(|o| o.expect("floor + 1 per member covers every shard"))
        .collect()
}

/// Holds this replica's share of the shard leases until `stop`, then hands them
/// back; `changed` hears of every shard taken or handed over.
pub async fn run<S>(
    client: Client,
    settings: LeaseSettings,
    ownership: Arc<Ownership>,
    metrics: Arc<Metrics>,
    changed: impl Fn(Change),
    stop: S,
) where
    S: Future<Output = ()> + Clone,
{
    let mut shards = Shards {
        api: Api::namespaced(client, &settings.namespace),
        settings,
        ownership,
        observed: Observations::default(),
        rounds: 0,
    };
    loop {
        if let Err(e) = shards.round(&changed).await {
            tracing::warn!(error = %e, "lease round failed; held shards lapse unless renewed in time");
        }
        shards.report(&metrics);
        tokio::select! {
            _ = tokio::time::sleep(shards.settings.renew_every) => {}
            _ = stop.clone() => break,
        }
    }
    shards.hand_back_all(&changed).await;
    shards.report(&metrics);
    let member = member_lease_name(&shards.settings.name, &shards.settings.identity);
    if let Err(e) = shards.api.delete(&member, &DeleteParams::default()).await {
        tracing::debug!(error = %e, "could not delete this replica's member lease; it expires on its own");
    }
}

struct Shards {
    api: Api<Lease>,
    settings: LeaseSettings,
    ownership: Arc<Ownership>,
    observed: Observations,
    /// Rounds done: the first only announces this replica.
    rounds: u64,
}

impl Shards {
    /// One look at the leases: renew membership, then take, renew or hand back shards.
    async fn round(&mut self, changed: &impl Fn(Change)) -> Result<(), kube::Error> {
        let prefix = self.settings.name.clone();
        let me = self.settings.identity.clone();
        let count = self.ownership.count();
        let listed: HashMap<String, Lease> = self
            .api
            .list(&ListParams::default())
            .await?
            .into_iter()
            .map(|l| (l.name_any(), l))
            .collect();

        let member = member_lease_name(&prefix, &me);
        let annotations = BTreeMap::from([(SHARDS_ANNOTATION.to_string(), count.to_string())]);
        lease::take(
            &self.api,
            &member,
            listed.get(&member),
            &self.settings,
            self.labels(),
            annotations,
        )
        .await?;

        let mut members = vec![me.clone()];
        let mut disagree = Vec::new();
        let member_prefix = format!("{prefix}-member-");
        for (name, l) in &listed {
            if !name.starts_with(&member_prefix) || *name == member {
                continue;
            }
            if let Holding::Live(holder) = self.observed.observe(l) {
                let theirs = l
                    .annotations()
                    .get(SHARDS_ANNOTATION)
                    .and_then(|n| n.parse::<u32>().ok());
                if theirs != Some(count) {
                    disagree.push(format!(
                        "{holder} ({})",
                        theirs.map_or("?".into(), |n| n.to_string())
                    ));
                }
                members.push(holder);
            } else {
                // A dead replica's member lease (a killed pod leaves one behind): delete it
                // unless it changed since it was read, so member leases do not pile up as
                // pods come and go. A replica only slow to renew creates its own again.
                let unchanged = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: l.resource_version(),
                        uid: None,
                    }),
                    ..DeleteParams::default()
                };
                if let Err(e) = self.api.delete(name, &unchanged).await {
                    tracing::debug!(lease = %name, error = %e, "could not delete an expired member lease");
                }
            }
        }
        if !disagree.is_empty() {
            // Different counts put one autoscaler in different shards: no one may act.
            tracing::error!(shards = count, others = ?disagree, "live replicas run with a different --shards; holding no shard until they agree");
            self.hand_back_all(changed).await;
            return Ok(());
        }
        members.sort();
        members.dedup();
        self.rounds += 1;
        if self.rounds == 1 {
            // Replicas started together see each other from the second round on; the
            // first takes no shard, or it would load every autoscaler only to hand most over.
            return Ok(());
        }
        let owners = assign(count, &members);

        // Decide every shard first, then write them all at once: a round must finish
        // well within a lease duration even when the runtime and the API server are busy.
        let mut takes = Vec::new();
        for shard in 0..count {
            let name = shard_lease_name(&prefix, shard, count);
            let current = listed.get(&name);
            let holding = current.map_or(Holding::Free, |l| self.observed.observe(l));
            let mine = members[owners[shard as usize]] == me;
            if mine && holding.open_to(&me) {
                takes.push((shard, name, current));
            } else if self.ownership.holds(shard) || holding == Holding::Live(me.clone()) {
                // Assigned elsewhere: stop now, release once the writes in flight have
                // landed, without holding up the renewal of the other shards.
                self.ownership.stop(shard);
                changed(Change::Lost(shard));
                let (ownership, api, me) =
                    (Arc::clone(&self.ownership), self.api.clone(), me.clone());
                tokio::spawn(async move {
                    ownership.drained(shard).await;
                    // Taken again meanwhile (the members changed back): keep it.
                    if !ownership.holds(shard) {
                        lease::release(&api, &name, &me).await;
                        tracing::info!(shard, lease = %name, "handed a shard over");
                    }
                });
            }
        }
        let labels = self.labels();
        let written = futures::future::join_all(takes.iter().map(|(_, name, current)| {
            lease::take(
                &self.api,
                name,
                *current,
                &self.settings,
                labels.clone(),
                BTreeMap::new(),
            )
        }))
        .await;
        for ((shard, name, _), result) in takes.iter().zip(written) {
            match result {
                Ok(Some(taken)) => {
                    let until = taken.sent + self.valid_for();
                    if self.ownership.grant(*shard, until, taken.transitions) {
                        tracing::info!(shard, lease = %name, "took a shard");
                        changed(Change::Gained(*shard));
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(shard, error = %e, "could not renew a shard lease"),
            }
        }
        Ok(())
    }

    /// How long after a renewal was sent this replica still acts on the shard: the
    /// lease duration less a quarter, so a write in flight lands before anyone takes over.
    fn valid_for(&self) -> Duration {
        self.settings.duration - self.settings.duration / 4
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(LEASE_SET_LABEL.to_string(), self.settings.name.clone())])
    }

    /// Stops acting on every shard, then releases its lease.
    async fn hand_back_all(&self, changed: &impl Fn(Change)) {
        let count = self.ownership.count();
        for shard in 0..count {
            if self.ownership.holds(shard) {
                self.ownership.revoke(shard).await;
                changed(Change::Lost(shard));
                let name = shard_lease_name(&self.settings.name, shard, count);
                lease::release(&self.api, &name, &self.settings.identity).await;
            }
        }
    }

    fn report(&self, metrics: &Metrics) {
        let held: Vec<u32> = (0..self.ownership.count())
            .filter(|s| self.ownership.holds(*s))
            .collect();
        metrics.set_shards(self.ownership.count(), &held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("replica-{i}")).collect()
    }

    #[test]
    fn every_member_gets_its_share_and_no_more_than_one_shard_above_another() {
        for count in [1u32, 2, 7, 12, 16, 64] {
            for m in 1..=5 {
                let owners = assign(count, &names(m));
                assert_eq!(owners.len(), count as usize);
                let mut load = vec![0; m];
                for o in owners {
                    load[o] += 1;
                }
                let (lo, hi) = (load.iter().min().unwrap(), load.iter().max().unwrap());
                assert!(hi - lo <= 1, "{count} shards over {m}: {load:?}");
            }
        }
    }

    #[test]
    fn a_member_leaving_moves_its_shards_and_few_others() {
        let three = names(3);
        let before = assign(12, &three);
        let two = vec![three[0].clone(), three[2].clone()];
        let after = assign(12, &two);
        let moved = (0..12)
            .filter(|&s| {
                let was = &three[before[s]];
                was != &three[1] && was != &two[after[s]]
            })
            .count();
        // The departed member's 4 shards must move; of the other 8, only enough to rebalance.
        assert!(moved <= 2, "{moved} shards of live members moved");
    }

    #[test]
    fn shards_spread_autoscalers_evenly_and_agree_across_calls() {
        let mut load = [0u32; 8];
        for i in 0..8000 {
            load[shard_of("team", &format!("web-{i}"), 8) as usize] += 1;
        }
        assert!(load.iter().all(|&n| (850..1150).contains(&n)), "{load:?}");
        assert_eq!(shard_of("a", "b", 8), shard_of("a", "b", 8));
        // Replicas of different versions run side by side in a rolling update:
        // the assignment is the digest of `namespace/name`, whatever computes it.
        for (ns, name) in [("team", "web-7"), ("a", "b/c"), ("", "x")] {
            let whole = Digest::of(format!("{ns}/{name}").as_bytes());
            let h = u64::from_le_bytes(whole.0[8..16].try_into().unwrap());
            assert_eq!(shard_of(ns, name, 12), (h % 12) as u32);
        }
    }

    #[tokio::test]
    async fn a_claim_lapses_with_its_lease_and_a_new_term_starts_afresh() {
        let o = Ownership::sharded("me", 1);
        assert!(o.owns("ns", "x").is_none());
        assert!(o.grant(0, Instant::now() + Duration::from_secs(60), 0));
        let first = o.owns("ns", "x").expect("held");
        assert!(o.hold(first).await.is_some());
        // Renewing the same term keeps the claim.
        assert!(!o.grant(0, Instant::now() + Duration::from_secs(60), 0));
        assert_eq!(o.owns("ns", "x"), Some(first));
        o.revoke(0).await;
        assert!(o.owns("ns", "x").is_none());
        assert!(
            o.hold(first).await.is_none(),
            "a revoked claim may not write"
        );
        assert!(o.grant(0, Instant::now() + Duration::from_millis(30), 1));
        let second = o.owns("ns", "x").expect("held again");
        assert_ne!(second.term, first.term);
        assert!(o.hold(first).await.is_none(), "an old term may not write");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(o.owns("ns", "x").is_none(), "unrenewed, the claim lapses");
        assert!(o.hold(second).await.is_none());
        // Renewed late, with no other holder in between: the same term resumes.
        assert!(!o.grant(0, Instant::now() + Duration::from_millis(30), 1));
        assert_eq!(o.owns("ns", "x"), Some(second));
        tokio::time::sleep(Duration::from_millis(40)).await;
        // Renewed after another replica held the lease (one more transition): a new term.
        assert!(o.grant(0, Instant::now() + Duration::from_secs(60), 3));
        assert_ne!(o.owns("ns", "x").unwrap().term, second.term);
    }

    #[tokio::test]
    async fn a_hand_over_waits_for_the_write_in_flight() {
        let o = Arc::new(Ownership::sharded("me", 1));
        o.grant(0, Instant::now() + Duration::from_secs(60), 0);
        let claim = o.owns("ns", "x").unwrap();
        let guard = o.hold(claim).await.unwrap();
        let revoking = {
            let o = Arc::clone(&o);
            tokio::spawn(async move { o.revoke(0).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!revoking.is_finished(), "revoke must wait for the write");
        drop(guard);
        revoking.await.unwrap();
        assert!(o.owns("ns", "x").is_none());
    }
}
