//! Kubernetes Events about autoscalers (`events.k8s.io/v1`).
//!
//! An Event repeated within [`SERIES_WINDOW`] (same object, type, reason and
//! note) is counted on the first one's `series` instead of being created again,
//! as Kubernetes' own recorders do. Only a hash of the repeat key, the first
//! Event's name and the count are remembered, never the Event itself, and at
//! most [`MAX_SERIES`] of them: kube's `Recorder` keeps every Event it sent
//! for six minutes, which at start-up (one `PolicyLoaded` per autoscaler and
//! role) held tens of MiB, and scanned them all on every publish.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};

use super::crd::WasmAutoscaler;

/// How long a repeat is counted on the first Event's series.
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// Most series remembered; past it, a repeat is created as a new Event.
pub const MAX_SERIES: usize = 16_384;

/// Whether an Event reports something normal or something to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// The first Event of a series: its name, and how often it happened so far.
#[derive(Debug, Clone)]
struct Series {
    name: String,
    count: i32,
    last: Timestamp,
}

/// Publishes Events as one reporting controller and instance.
pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    /// Series by a keyed hash of (object, type, reason, note): the key's strings
    /// are not kept, and a tenant cannot aim two keys at one hash.
    series: Mutex<HashMap<u64, Series>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Recorder {
    /// A recorder reporting as `controller`, replica `instance`.
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Recorder {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            series: Mutex::new(HashMap::new()),
            hasher: Default::default(),
        }
    }

    /// Publishes an Event about `obj`: creates it, or counts a repeat on its series.
    pub async fn publish(
        &self,
        obj: &WasmAutoscaler,
        type_: EventType,
        reason: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = self.key(obj, type_, reason, note);
        let repeat = self.repeat_of(key, now);
        let namespace = obj.namespace().unwrap_or_default();
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        if let Some(series) = repeat {
            let patch = serde_json::json!({"series": EventSeries {
                count: series.count,
                last_observed_time: MicroTime(now),
            }});
            match events
                .patch(&series.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // Expired on the server (Events have a TTL): start a new one.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let event = self.event(obj, type_, reason, note, now);
        let name = event.name_any();
        events.create(&PostParams::default(), &event).await?;
        self.remember(
            key,
            Series {
                name,
                count: 1,
                last: now,
            },
        );
        Ok(())
    }

    fn key(&self, obj: &WasmAutoscaler, type_: EventType, reason: &str, note: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        // The uid tells a re-created autoscaler of the same name apart.
        (obj.meta().uid.as_deref(), obj.namespace(), obj.name_any()).hash(&mut h);
        (type_, reason, note).hash(&mut h);
        h.finish()
    }

    /// The series `key` continues, its count already raised; none when there is
    /// none within the window.
    fn repeat_of(&self, key: u64, now: Timestamp) -> Option<Series> {
        let mut series = self.series.lock().expect("event series lock");
        let s = series.get_mut(&key)?;
        if s.last + SERIES_WINDOW <= now {
            series.remove(&key);
            return None;
        }
        s.count = s.count.saturating_add(1);
        s.last = now;
        Some(s.clone())
    }

    fn remember(&self, key: u64, new: Series) {
        let mut series = self.series.lock().expect("event series lock");
        if series.len() >= MAX_SERIES {
            // Amortized: a sweep runs once per MAX_SERIES new series at most
            // when most are live, and frees the room of the expired ones.
            let now = new.last;
            series.retain(|_, s| s.last + SERIES_WINDOW > now);
            if series.len() >= MAX_SERIES {
                return;
            }
        }
        series.insert(key, new);
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.series.lock().expect("event series lock").len()
    }

    fn event(
        &self,
        obj: &WasmAutoscaler,
        type_: EventType,
        reason: &str,
        note: &str,
        now: Timestamp,
    ) -> K8sEvent {
        K8sEvent {
            metadata: ObjectMeta {
                namespace: obj.namespace(),
                name: Some(format!("{}.{:x}", obj.name_any(), now.as_nanosecond())),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(type_.as_str().to_string()),
            reason: Some(reason.to_string()),
            action: Some(reason.to_string()),
            // The API server refuses a note longer than 1 KiB.
            note: Some(truncate(note, 1024).to_string()),
            regarding: Some(obj.object_ref(&())),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..K8sEvent::default()
        }
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> Recorder {
        // Never contacted: these tests exercise the series book-keeping only.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        Recorder::new(client, "wasm-autoscaler", "test")
    }

    fn series(name: &str, at: Timestamp) -> Series {
        Series {
            name: name.into(),
            count: 1,
            last: at,
        }
    }

    #[tokio::test]
    async fn a_repeat_within_the_window_counts_on_the_first_event_and_not_after() {
        let r = recorder();
        let t0 = Timestamp::now();
        assert!(r.repeat_of(7, t0).is_none(), "nothing to repeat yet");
        r.remember(7, series("first", t0));
        let again = r.repeat_of(7, t0 + SignedDuration::from_mins(5)).unwrap();
        assert_eq!((again.name.as_str(), again.count), ("first", 2));
        // The window runs from the last repeat.
        let third = r.repeat_of(7, t0 + SignedDuration::from_mins(10)).unwrap();
        assert_eq!(third.count, 3);
        assert!(r.repeat_of(7, t0 + SignedDuration::from_mins(17)).is_none());
        assert_eq!(r.remembered(), 0, "an expired series is forgotten");
    }

    #[tokio::test]
    async fn the_series_book_is_bounded_and_sweeps_expired_series_first() {
        let r = recorder();
        let t0 = Timestamp::now();
        for k in 0..MAX_SERIES as u64 {
            r.remember(k, series("old", t0));
        }
        let later = t0 + SignedDuration::from_mins(1);
        r.remember(u64::MAX, series("new", later));
        assert_eq!(r.remembered(), MAX_SERIES, "full of live series: not kept");
        assert!(r.repeat_of(u64::MAX, later).is_none());
        let after = t0 + SERIES_WINDOW + SignedDuration::from_secs(1);
        r.remember(u64::MAX, series("new", after));
        assert_eq!(r.remembered(), 1, "the expired ones made room");
    }

    #[test]
    fn notes_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("abc", 1024), "abc");
        let long = "é".repeat(600);
        let cut = truncate(&long, 1024);
        assert_eq!(cut.len(), 1024);
        assert_eq!(truncate("aé", 2), "a");
    }
}
