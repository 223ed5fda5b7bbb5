//! The scale-down dwell, kept in the decider's `state`: fewer pods only after
//! every decision over the dwell wanted fewer, and then the most any of them
//! wanted, so a dip shorter than the dwell changes nothing.

/// What the dwell makes of a tick that wants fewer pods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Keep the current count; the dwell ends in `left_ms`.
    Wait { left_ms: f64 },
    /// Scale down to `to`: the most pods any tick of the dwell wanted.
    Go { to: u32 },
}

/// The dwell's memory between calls.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Dwell {
    /// When the ticks started wanting fewer pods, in ms since the epoch.
    pub since_ms: Option<f64>,
    /// The most pods a tick has wanted since then.
    pub most: u32,
}

impl Dwell {
    /// A tick at `now_ms` wants `wanted` pods, fewer than it has.
    pub fn want_fewer(&mut self, now_ms: f64, wanted: u32, dwell_ms: f64) -> Step {
        let since = match self.since_ms {
            // A clock that went back starts the dwell again, as a first tick does.
            Some(since) if since <= now_ms => {
                self.most = self.most.max(wanted);
                since
            }
            _ => {
                self.since_ms = Some(now_ms);
                self.most = wanted;
                now_ms
            }
        };
        let waited = now_ms - since;
        if waited >= dwell_ms {
            let to = self.most;
            self.reset();
            Step::Go { to }
        } else {
            Step::Wait {
                left_ms: dwell_ms - waited,
            }
        }
    }

    /// A tick that does not want fewer pods ends the dwell.
    pub fn reset(&mut self) {
        *self = Dwell::default();
    }
}
