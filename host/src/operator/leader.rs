//! Leader election through a `coordination.k8s.io/v1` Lease, so that of
//! several operator replicas exactly one scales targets.
//!
//! A lease is taken over only after its record has stayed unchanged for a
//! whole lease duration as this replica observed it, so clock skew between
//! nodes cannot hand the lease to two holders.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::telemetry::Metrics;

/// Where the lease lives and how it is held.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's identity in the lease (its pod name).
    pub identity: String,
    /// How long a lease holds without renewal.
    pub duration: Duration,
    /// How often the holder renews, and others retry.
    pub renew_every: Duration,
}

/// Runs `work` while this replica holds the lease: waits for the lease,
/// starts `work`, and stops it as soon as a renewal fails. Returns when
/// `work` returns (releasing the lease), or when `stop` completes while
/// this replica is waiting for the lease.
pub async fn run_while_leader<F, Fut, S>(
    client: Client,
    settings: LeaseSettings,
    metrics: &Metrics,
    mut work: F,
    stop: S,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
    S: Future<Output = ()> + Clone,
{
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let mut elector = Elector {
        api,
        settings,
        observed: None,
    };
    loop {
        while !elector.try_acquire_or_renew().await {
            tokio::select! {
                _ = tokio::time::sleep(elector.settings.renew_every) => {}
                _ = stop.clone() => return,
            }
        }
        tracing::info!(identity = %elector.settings.identity, lease = %elector.settings.name, "became leader");
        metrics.set_leader(true);
        let lost = async {
            loop {
                tokio::time::sleep(elector.settings.renew_every).await;
                if !elector.try_acquire_or_renew().await {
                    return;
                }
            }
        };
        tokio::select! {
            _ = work() => {
                metrics.set_leader(false);
                elector.release().await;
                return;
            }
            _ = lost => {
                tracing::warn!(identity = %elector.settings.identity, "lost the leader lease; stopped scaling");
                metrics.set_leader(false);
            }
        }
    }
}

struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// The last lease record seen (holder, renew time) and when it was first seen.
    observed: Option<(String, Option<String>, Instant)>,
}

impl Elector {
    /// Takes or renews the lease; true while this replica holds it.
    async fn try_acquire_or_renew(&mut self) -> bool {
        match self.attempt().await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "leader lease request failed");
                false
            }
        }
    }

    async fn attempt(&mut self) -> Result<bool, kube::Error> {
        let me = &self.settings.identity;
        let now = MicroTime(Timestamp::now());
        let seconds = self.settings.duration.as_secs().max(1) as i32;
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
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
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let record = (
            holder.clone(),
            spec.renew_time.as_ref().map(|t| t.0.to_string()),
        );
        let observed_since = match &self.observed {
            Some((h, r, since)) if (h, r) == (&record.0, &record.1) => *since,
            _ => Instant::now(),
        };
        self.observed = Some((record.0, record.1, observed_since));
        let duration = spec
            .lease_duration_seconds
            .map_or(self.settings.duration, |s| {
                Duration::from_secs(s.max(1) as u64)
            });
        let held_by_me = holder == *me;
        let expired = holder.is_empty() || observed_since.elapsed() >= duration;
        if !held_by_me && !expired {
            return Ok(false);
        }
        if !held_by_me {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(me.clone());
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(seconds);
        // The replace carries the resourceVersion read above: if another
        // replica wrote in between, the server answers 409 and we lose.
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                let renew = written
                    .spec
                    .and_then(|s| s.renew_time)
                    .map(|t| t.0.to_string());
                self.observed = Some((me.clone(), renew, Instant::now()));
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up so another replica can take it without waiting
    /// for it to expire (a clean shutdown, e.g. during a rolling update).
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(&self.settings.identity) {
            return;
        }
        spec.holder_identity = None;
        if let Err(e) = self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(error = %e, "could not release the leader lease; it expires on its own");
        }
    }
}
