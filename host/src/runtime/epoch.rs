//! The epoch ticker that enforces call deadlines. It advances the engine's
//! epoch every [`EPOCH_TICK`] while a guest call runs, and sleeps parked while
//! none does: at 10,000 autoscalers a ticker that always ran woke its thread
//! 200 times a second, as often as every other thread of the operator together.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, Thread};
use std::time::Duration;

use wasmtime::{EngineWeak, Store};

/// How often the epoch advances while a call runs; deadlines are rounded up to it.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The ticker thread and the calls it waits for.
#[derive(Default)]
pub(super) struct Ticker {
    /// Guest calls (instantiations included) running now.
    running: AtomicUsize,
    stop: AtomicBool,
    thread: OnceLock<Thread>,
}

/// A guest call in progress; the ticker advances the epoch until every such
/// guard is dropped.
pub(super) struct Running(Arc<Ticker>);

impl Ticker {
    /// Starts the ticker for `engine`; it ends when [`Ticker::stop`] is called
    /// or the engine is gone.
    pub(super) fn start(engine: EngineWeak) -> Arc<Self> {
        let ticker = Arc::new(Ticker::default());
        let own = Arc::clone(&ticker);
        let handle = thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || own.run(engine))
            .expect("spawning the epoch ticker thread");
        ticker
            .thread
            .set(handle.thread().clone())
            .expect("set once");
        ticker
    }

    fn run(&self, engine: EngineWeak) {
        while !self.stop.load(Ordering::Acquire) {
            if self.running.load(Ordering::Acquire) == 0 {
                // A call that starts after this check unparks us, and an unpark
                // that comes before `park` makes it return at once.
                thread::park();
                continue;
            }
            thread::sleep(EPOCH_TICK);
            match engine.upgrade() {
                Some(e) => e.increment_epoch(),
                None => return,
            }
        }
    }

    /// Sets `store`'s deadline `ticks` epochs on and marks a call running until
    /// the returned guard is dropped.
    pub(super) fn arm<T>(self: &Arc<Self>, store: &mut Store<T>, ticks: u64) -> Running {
        store.set_epoch_deadline(ticks);
        if self.running.fetch_add(1, Ordering::AcqRel) == 0 {
            self.wake();
        }
        Running(Arc::clone(self))
    }

    /// Ends the ticker thread.
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake();
    }

    fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    #[cfg(test)]
    fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Config, Engine};

    fn engine() -> Engine {
        let mut config = Config::new();
        config.epoch_interruption(true);
        Engine::new(&config).unwrap()
    }

    /// Whether the engine's epoch advances within `within`, seen as a call
    /// that traps once its deadline one epoch on has passed.
    fn epoch_moves(engine: &Engine, within: Duration) -> bool {
        let mut store = Store::new(engine, ());
        // A deadline one epoch on passes when the epoch advances once.
        store.set_epoch_deadline(1);
        let started = std::time::Instant::now();
        let wasm = wat::parse_str(r#"(module (func (export "f")))"#).unwrap();
        let module = wasmtime::Module::new(engine, wasm).unwrap();
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let f = instance.get_typed_func::<(), ()>(&mut store, "f").unwrap();
        while started.elapsed() < within {
            if f.call(&mut store, ()).is_err() {
                return true;
            }
            thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn the_epoch_advances_only_while_a_call_runs() {
        let engine = engine();
        let ticker = Ticker::start(engine.weak());
        assert!(
            !epoch_moves(&engine, EPOCH_TICK * 6),
            "no call runs: the epoch stands still"
        );
        let mut store = Store::new(&engine, ());
        let running = ticker.arm(&mut store, 3);
        assert_eq!(ticker.running(), 1);
        assert!(
            epoch_moves(&engine, Duration::from_secs(5)),
            "a call runs: the epoch advances"
        );
        drop(running);
        assert_eq!(ticker.running(), 0);
        // Give the ticker one tick to see that nothing runs, then the epoch stands again.
        thread::sleep(EPOCH_TICK * 3);
        assert!(!epoch_moves(&engine, EPOCH_TICK * 6));
        ticker.stop();
    }
}
