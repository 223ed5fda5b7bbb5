//! The clairvoyant limit: the cheapest replica schedule that never violates
//! the SLO, for an autoscaler that knows the whole trace in advance.
//!
//! It is the yardstick every set-up is measured against: no real policy can
//! beat it, so "pod-hours × limit" says how much a policy pays for not
//! knowing the future. Pods are identical, so the optimum decomposes into
//! layers: layer `k` is the `k`-th pod, needed while the load asks for at
//! least `k` pods. Each layer's pod is created exactly `startup` seconds
//! before it is needed and kept through a gap no longer than the start-up,
//! since re-creating it would cost the start-up again.

use super::{Point, SimParams, Summary, Trace};

/// The limit's summary and its per-tick series (for the plot).
#[derive(Debug, Clone)]
pub struct Limit {
    pub summary: Summary,
    pub series: Vec<Point>,
}

/// The name the limit goes by in reports.
pub const LIMIT: &str = "limit";

/// Computes the clairvoyant schedule for `trace` under the run's capacity,
/// start-up, bounds and SLO utilization.
pub fn clairvoyant(trace: &Trace, params: &SimParams) -> Limit {
    let duration = trace.duration_s();
    let needs: Vec<u32> = trace.rps.iter().map(|&r| pods_needed(r, params)).collect();
    let layers = needs.iter().copied().max().unwrap_or(0);
    // Changes of the pod count and of the ready count, per second.
    let mut exist_delta = vec![0i64; duration as usize + 1];
    let mut ready_delta = vec![0i64; duration as usize + 1];
    let mut add = |pod: Pod| {
        if pod.end > pod.created {
            exist_delta[pod.created as usize] += 1;
            exist_delta[pod.end as usize] -= 1;
        }
        if pod.end > pod.ready {
            ready_delta[pod.ready as usize] += 1;
            ready_delta[pod.end as usize] -= 1;
        }
    };
    for k in 1..=layers {
        let initial = k <= params.initial_replicas;
        // The initial pods exist and serve at 0; keeping one costs only the gap.
        let mut pod = initial.then_some(Pod {
            created: 0,
            ready: 0,
            end: 0,
        });
        for (start, end) in runs(&needs, k, trace.step_s) {
            match &mut pod {
                Some(p) if start - p.end <= params.startup_seconds => p.end = end,
                _ => {
                    if let Some(p) = pod.take() {
                        add(p);
                    }
                    let created = start.saturating_sub(params.startup_seconds);
                    pod = Some(Pod {
                        created,
                        ready: created + params.startup_seconds,
                        end,
                    });
                }
            }
        }
        if let Some(p) = pod {
            add(p);
        }
    }

    let mut summary = Summary::new(LIMIT);
    let mut series = Vec::new();
    let interval = params.interval_seconds.max(1);
    let (mut replicas, mut ready, mut previous) = (0i64, 0i64, None);
    for t in 0..duration {
        replicas += exist_delta[t as usize];
        ready += ready_delta[t as usize];
        let (replicas, ready) = (replicas as u32, ready as u32);
        if previous.is_some_and(|p| p != replicas) {
            summary.scale_actions += 1;
            if previous < Some(replicas) {
                summary.scale_ups += 1;
            } else {
                summary.scale_downs += 1;
            }
        }
        previous = Some(replicas);
        let load = trace.rps_at(t);
        let capacity = f64::from(ready) * params.capacity_per_pod;
        if t % interval == 0 {
            series.push(Point {
                t_s: t,
                load_rps: load,
                ready_capacity_rps: capacity,
                replicas,
                slo_violation_s: 0,
            });
        }
        super::record_second(&mut summary, &mut series, params, load, capacity, replicas);
    }
    summary.finish();
    Limit { summary, series }
}

/// One layer's pod: created, ready and removed at these seconds.
struct Pod {
    created: u64,
    ready: u64,
    end: u64,
}

/// The fewest pods that keep `rps` within the SLO, inside the run's bounds.
fn pods_needed(rps: f64, params: &SimParams) -> u32 {
    let per_pod = params.capacity_per_pod * params.slo_utilization;
    let pods = (rps / per_pod).ceil().min(f64::from(params.max_replicas));
    (pods as u32).clamp(params.min_replicas, params.max_replicas)
}

/// The spans, in seconds, over which `needs` (one per trace step) is at least `k`.
fn runs(needs: &[u32], k: u32, step_s: u64) -> Vec<(u64, u64)> {
    let mut spans = Vec::new();
    let mut open = None;
    for (i, &n) in needs.iter().enumerate() {
        match (n >= k, open) {
            (true, None) => open = Some(i),
            (false, Some(s)) => {
                spans.push((s as u64 * step_s, i as u64 * step_s));
                open = None;
            }
            _ => {}
        }
    }
    if let Some(s) = open {
        spans.push((s as u64 * step_s, needs.len() as u64 * step_s));
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 rps per pod at the SLO line, 60 s start-up, one pod at the start.
    fn params() -> SimParams {
        SimParams {
            capacity_per_pod: 12.5,
            startup_seconds: 60,
            initial_replicas: 1,
            min_replicas: 1,
            max_replicas: 100,
            interval_seconds: 15,
            history_len: 240,
            slo_utilization: 0.8,
            start_ms: 0,
        }
    }

    fn trace(rows: &[f64]) -> Trace {
        let text: String = std::iter::once("t_seconds,rps\n".to_string())
            .chain(
                rows.iter()
                    .enumerate()
                    .map(|(i, r)| format!("{},{r}\n", i * 60)),
            )
            .collect();
        Trace::parse("hand", &text).unwrap()
    }

    #[test]
    fn a_step_up_creates_pods_one_startup_ahead() {
        // 10 rps for 5 minutes, then 30 rps for 5: two more pods, created at
        // 240 s (ready at 300 s) and kept to the end at 600 s.
        let limit = clairvoyant(
            &trace(&[10.0; 5].into_iter().chain([30.0; 5]).collect::<Vec<_>>()),
            &params(),
        );
        let s = &limit.summary;
        assert_eq!(s.slo_violation_seconds, 0);
        assert_eq!(s.peak_replicas, 3);
        // 600 pod-seconds for the first pod, 2 × 360 for the others.
        assert_eq!(s.pod_hours, ((600.0 + 720.0) / 36.0f64).round() / 100.0);
        assert_eq!((s.scale_ups, s.scale_downs), (1, 0));
        let at = |t: u64| limit.series.iter().find(|p| p.t_s == t).unwrap();
        assert_eq!((at(225).replicas, at(240).replicas), (1, 3));
        assert_eq!(
            (at(285).ready_capacity_rps, at(300).ready_capacity_rps),
            (12.5, 37.5)
        );
    }

    #[test]
    fn a_dip_shorter_than_the_startup_keeps_the_pod() {
        // 20 rps, one minute at 10 rps, 20 rps again: re-creating the second
        // pod would cost 60 s of start-up, keeping it costs the 60 s dip.
        let params = SimParams {
            initial_replicas: 2,
            ..params()
        };
        let limit = clairvoyant(&trace(&[20.0, 20.0, 10.0, 20.0, 20.0]), &params);
        let s = &limit.summary;
        assert_eq!(s.slo_violation_seconds, 0);
        assert_eq!(s.scale_actions, 0);
        assert_eq!(s.pod_hours, ((2.0 * 300.0) / 36.0f64).round() / 100.0);
    }

    #[test]
    fn a_dip_longer_than_the_startup_removes_the_pod() {
        // Two minutes at 10 rps between 20 rps: the second pod goes at 120 s
        // and a new one is created at 180 s, ready at 240 s.
        let params = SimParams {
            initial_replicas: 2,
            ..params()
        };
        let limit = clairvoyant(&trace(&[20.0, 20.0, 10.0, 10.0, 20.0, 20.0]), &params);
        let s = &limit.summary;
        assert_eq!(s.slo_violation_seconds, 0);
        assert_eq!((s.scale_ups, s.scale_downs), (1, 1));
        // Pod 1: 360 s; pod 2: 0–120 s, then 180–360 s.
        assert_eq!(
            s.pod_hours,
            ((360.0 + 120.0 + 180.0) / 36.0f64).round() / 100.0
        );
    }

    #[test]
    fn a_pod_needed_before_it_can_start_is_a_violation() {
        // Two pods needed from the first second with one at the start: the
        // second serves only after its start-up, whoever knows the future.
        let limit = clairvoyant(&trace(&[20.0, 20.0]), &params());
        assert_eq!(limit.summary.slo_violation_seconds, 60);
    }
}
