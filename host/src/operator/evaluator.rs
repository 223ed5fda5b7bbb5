//! A fixed set of threads for policy calls. A call may run up to its deadline,
//! so it stays off the async workers; a fixed set, unlike the async runtime's
//! blocking pool, keeps the thread count (each thread with its stack and its
//! allocator arena) from growing with the number of autoscalers ticking at once.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

type Job = Box<dyn FnOnce() + Send>;

/// Runs closures on a fixed set of threads, in the order they were handed in.
pub struct Evaluator {
    jobs: mpsc::Sender<Job>,
}

impl Evaluator {
    /// Starts `threads` threads (at least one); they end when the evaluator is dropped.
    pub fn new(threads: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            thread::Builder::new()
                .name(format!("policy-{i}"))
                .spawn(move || loop {
                    let next = queue.lock().expect("evaluator queue lock").recv();
                    match next {
                        Ok(job) => job(),
                        Err(_) => break,
                    }
                })
                .expect("a policy thread starts");
        }
        Evaluator { jobs }
    }

    /// Runs `work` on one of the threads and waits for its result; a panic in
    /// `work` resumes here.
    pub async fn run<R: Send + 'static>(&self, work: impl FnOnce() -> R + Send + 'static) -> R {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(catch_unwind(AssertUnwindSafe(work)));
        });
        if self.jobs.send(job).is_err() {
            unreachable!("the threads outlive the evaluator");
        }
        match result.await {
            Ok(Ok(r)) => r,
            Ok(Err(panic)) => resume_unwind(panic),
            Err(_) => unreachable!("a job always answers"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn many_calls_share_a_few_threads() {
        let evaluator = Evaluator::new(2);
        let names: Vec<String> = futures::future::join_all((0..50).map(|i| {
            evaluator.run(move || {
                assert!(i < 50);
                thread::current().name().unwrap_or_default().to_string()
            })
        }))
        .await;
        let mut distinct = names.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() <= 2, "{distinct:?}");
        assert!(distinct.iter().all(|n| n.starts_with("policy-")));
    }

    #[tokio::test]
    async fn a_panic_reaches_the_caller_and_the_thread_serves_on() {
        let evaluator = Evaluator::new(1);
        let caught = AssertUnwindSafe(evaluator.run(|| panic!("on purpose")));
        assert!(futures::FutureExt::catch_unwind(caught).await.is_err());
        assert_eq!(evaluator.run(|| 7).await, 7);
    }
}
