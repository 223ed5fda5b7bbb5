//! The learned shape of one period, and its compact encoding in `state`.

use wasm_autoscaler_guest::Sample;

/// Encoding version, so a future layout is never misread.
const VERSION: u8 = 1;

/// Slot means over a period, with the slot still being filled.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    slot_ms: f64,
    /// Each slot's blended mean; NaN until a slot has been seen once.
    means: Vec<f32>,
    /// The time of the newest sample learned, so no sample counts twice.
    last_ms: f64,
    /// The absolute slot being filled (time / slot length) and its running sum and count.
    open_slot: u64,
    open_sum: f64,
    open_count: u32,
}

impl Profile {
    /// An empty profile of `slots` slots of `slot_seconds` each.
    pub fn new(slots: usize, slot_seconds: u64) -> Self {
        Profile {
            slot_ms: slot_seconds as f64 * 1000.0,
            means: vec![f32::NAN; slots],
            last_ms: f64::NEG_INFINITY,
            open_slot: 0,
            open_sum: 0.0,
            open_count: 0,
        }
    }

    /// Adds the samples newer than the last one learned; a slot's mean joins
    /// the profile once the samples have moved past it.
    pub fn learn(&mut self, samples: &[Sample], blend: f64) {
        let learned = self.last_ms;
        for s in samples.iter().filter(|s| s.time_ms > learned) {
            if !(s.value.is_finite() && s.time_ms.is_finite() && s.time_ms >= 0.0) {
                continue;
            }
            let slot = (s.time_ms / self.slot_ms) as u64;
            if slot != self.open_slot {
                self.close(blend);
                self.open_slot = slot;
            }
            self.open_sum += s.value;
            self.open_count += 1;
            self.last_ms = s.time_ms;
        }
    }

    fn close(&mut self, blend: f64) {
        if self.open_count > 0 {
            let mean = (self.open_sum / f64::from(self.open_count)) as f32;
            let i = (self.open_slot % self.means.len() as u64) as usize;
            let old = self.means[i];
            self.means[i] = if old.is_nan() {
                mean
            } else {
                blend as f32 * mean + (1.0 - blend as f32) * old
            };
        }
        (self.open_sum, self.open_count) = (0.0, 0);
    }

    /// The profile's value at time `t_ms`, between slot centres; none where
    /// a slot it needs has not been seen.
    fn at(&self, t_ms: f64) -> Option<f64> {
        let n = self.means.len() as f64;
        let x = t_ms / self.slot_ms - 0.5;
        let lower = x.floor();
        let frac = x - lower;
        let i = lower.rem_euclid(n) as usize;
        let j = (i + 1) % self.means.len();
        let (a, b) = (f64::from(self.means[i]), f64::from(self.means[j]));
        (!a.is_nan() && !b.is_nan()).then_some(a + (b - a) * frac)
    }

    /// How much the profile rises (or falls) from `from_ms` to `to_ms`; zero where unknown.
    pub fn change(&self, from_ms: f64, to_ms: f64) -> f64 {
        match (self.at(from_ms), self.at(to_ms)) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        }
    }

    /// The profile as `state` bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + 4 * self.means.len());
        out.push(VERSION);
        out.extend((self.means.len() as u32).to_le_bytes());
        out.extend(self.slot_ms.to_le_bytes());
        out.extend(self.last_ms.to_le_bytes());
        out.extend(self.open_slot.to_le_bytes());
        out.extend(self.open_sum.to_le_bytes());
        out.extend(self.open_count.to_le_bytes());
        for m in &self.means {
            out.extend(m.to_le_bytes());
        }
        out
    }

    /// A profile from `state` bytes, if they hold one of this shape.
    pub fn decode(bytes: &[u8], slots: usize, slot_seconds: u64) -> Option<Self> {
        let mut r = Reader(bytes);
        if r.take::<1>()?[0] != VERSION {
            return None;
        }
        let n = u32::from_le_bytes(r.take()?) as usize;
        let slot_ms = f64::from_le_bytes(r.take()?);
        if n != slots || slot_ms != slot_seconds as f64 * 1000.0 {
            return None;
        }
        let mut p = Profile {
            slot_ms,
            means: Vec::with_capacity(n),
            last_ms: f64::from_le_bytes(r.take()?),
            open_slot: u64::from_le_bytes(r.take()?),
            open_sum: f64::from_le_bytes(r.take()?),
            open_count: u32::from_le_bytes(r.take()?),
        };
        for _ in 0..n {
            p.means.push(f32::from_le_bytes(r.take()?));
        }
        r.0.is_empty().then_some(p)
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
}
