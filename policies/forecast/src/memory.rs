//! The decider's `state`: the anomaly guard's EWMA and the scale-down dwell,
//! in a small versioned encoding. State from another version, or damaged,
//! starts afresh: the guard learns again and the dwell starts over, both of
//! which only delay a scale-down.

use crate::dwell::Dwell;
use crate::guard::Guard;

const VERSION: u8 = 1;
/// version, level, variance, seen, run, dwell since (NaN: none), dwell most.
const LEN: usize = 1 + 8 + 8 + 4 + 4 + 8 + 4;

/// What the decider remembers between calls for one target.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Memory {
    pub guard: Guard,
    pub dwell: Dwell,
}

impl Memory {
    /// The bytes handed back as `state`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEN);
        out.push(VERSION);
        out.extend_from_slice(&self.guard.level.to_le_bytes());
        out.extend_from_slice(&self.guard.variance.to_le_bytes());
        out.extend_from_slice(&self.guard.seen.to_le_bytes());
        out.extend_from_slice(&self.guard.run.to_le_bytes());
        out.extend_from_slice(&self.dwell.since_ms.unwrap_or(f64::NAN).to_le_bytes());
        out.extend_from_slice(&self.dwell.most.to_le_bytes());
        out
    }

    /// The memory `state` holds; a fresh one when there is none or it is not ours.
    pub fn decode(state: Option<&[u8]>) -> Self {
        state.and_then(Self::parse).unwrap_or_default()
    }

    fn parse(bytes: &[u8]) -> Option<Self> {
        let (&version, mut rest) = bytes.split_first()?;
        if bytes.len() != LEN || version != VERSION {
            return None;
        }
        // Fields in the order `encode` writes them; the length was checked above.
        let mut take = |n: usize| {
            let (field, tail) = rest.split_at(n);
            rest = tail;
            field
        };
        let level = f64::from_le_bytes(take(8).try_into().ok()?);
        let variance = f64::from_le_bytes(take(8).try_into().ok()?);
        let seen = u32::from_le_bytes(take(4).try_into().ok()?);
        let run = i32::from_le_bytes(take(4).try_into().ok()?);
        let since = f64::from_le_bytes(take(8).try_into().ok()?);
        let most = u32::from_le_bytes(take(4).try_into().ok()?);
        Some(Memory {
            guard: Guard {
                level,
                variance,
                seen,
                run,
            },
            dwell: Dwell {
                since_ms: since.is_finite().then_some(since),
                most,
            },
        })
    }
}
