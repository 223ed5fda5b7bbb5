//! The simulated scale target: pods that become ready after a start-up
//! delay and serve a fixed request rate each.

use std::convert::Infallible;

use crate::pipeline::Actuator;

/// A workload whose pods are created and removed instantly but serve only
/// once their start-up delay has passed.
#[derive(Debug, Clone)]
pub struct SimulatedTarget {
    /// When each pod is (or was) ready, in seconds, ascending: pods are
    /// appended in creation order and all share one start-up delay.
    ready_at: Vec<u64>,
    startup_s: u64,
    now_s: u64,
}

impl SimulatedTarget {
    /// `replicas` pods, all ready at time 0.
    pub fn new(replicas: u32, startup_s: u64) -> Self {
        SimulatedTarget {
            ready_at: vec![0; replicas as usize],
            startup_s,
            now_s: 0,
        }
    }

    /// Moves the clock; pods created by later scale-ups start from here.
    pub fn set_now(&mut self, now_s: u64) {
        self.now_s = now_s;
    }

    /// Pods that exist.
    pub fn replicas(&self) -> u32 {
        self.ready_at.len() as u32
    }

    /// Pods serving at second `t`.
    pub fn ready(&self, t: u64) -> u32 {
        self.ready_at.partition_point(|&r| r <= t) as u32
    }
}

impl Actuator for SimulatedTarget {
    type Error = Infallible;

    /// Adds pods that start now, or removes the newest pods first (those
    /// still starting go before serving ones, as the ReplicaSet controller does).
    fn scale(&mut self, replicas: u32) -> Result<(), Infallible> {
        let ready_at = self.now_s + self.startup_s;
        self.ready_at.resize(replicas as usize, ready_at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_pods_serve_after_the_startup_delay() {
        let mut t = SimulatedTarget::new(2, 60);
        t.set_now(100);
        t.scale(5).unwrap();
        assert_eq!((t.replicas(), t.ready(159), t.ready(160)), (5, 2, 5));
    }

    #[test]
    fn scale_down_removes_starting_pods_first() {
        let mut t = SimulatedTarget::new(3, 60);
        t.set_now(10);
        t.scale(5).unwrap();
        t.scale(4).unwrap();
        assert_eq!((t.replicas(), t.ready(10), t.ready(70)), (4, 3, 4));
        t.scale(2).unwrap();
        assert_eq!(t.ready(1000), 2);
    }
}
