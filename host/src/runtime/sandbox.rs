//! What a policy instance sees: WASI with no capabilities, frozen clocks,
//! a memory cap, capped output and the `log` import. Every instance gets a
//! fresh [`Sandbox`] as its store data.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::clocks::{HostMonotonicClock, HostWallClock};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::artifacts::Artifacts;
use super::bindings::history_predictor::wasm_autoscaler::policy::long_history;
use super::bindings::model_predictor::wasm_autoscaler::policy::artifact;
use super::bindings::predictor::wasm_autoscaler::policy::log;
use super::bindings::CoarseHistory;
use super::bindings::LogLevel;

/// Limits applied to every policy instance.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most linear memory one instance may hold, in bytes.
    pub memory_bytes: usize,
    /// Most table elements one table may hold.
    pub table_elements: usize,
    /// Most bytes of stdout, stderr and `log` messages kept per instance; the rest is dropped.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            table_elements: 100_000,
            output_bytes: 16 << 10,
        }
    }
}

/// One line of guest output or one `log` call, kept until the call ends.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestLine {
    pub level: LogLevel,
    pub message: String,
}

/// Guest output collected during calls, capped at a byte budget.
#[derive(Debug, Default)]
pub struct Captured {
    pub lines: Vec<GuestLine>,
    pub dropped_bytes: usize,
    used: usize,
    partial_stdout: Vec<u8>,
    partial_stderr: Vec<u8>,
}

impl Captured {
    fn push(&mut self, cap: usize, level: LogLevel, message: String) {
        if self.used + message.len() > cap {
            self.dropped_bytes += message.len();
            return;
        }
        self.used += message.len();
        self.lines.push(GuestLine { level, message });
    }

    /// Adds raw stream bytes, splitting complete lines off.
    fn write_stream(&mut self, cap: usize, stderr: bool, bytes: &[u8]) {
        let budget_left = cap.saturating_sub(self.used + self.partial_len());
        let kept = bytes.len().min(budget_left);
        self.dropped_bytes += bytes.len() - kept;
        let buf = if stderr {
            &mut self.partial_stderr
        } else {
            &mut self.partial_stdout
        };
        buf.extend_from_slice(&bytes[..kept]);
        let mut complete = Vec::new();
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            complete.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
        }
        let level = if stderr {
            LogLevel::Warn
        } else {
            LogLevel::Info
        };
        for line in complete {
            self.used += line.len() + 1;
            self.lines.push(GuestLine {
                level,
                message: line,
            });
        }
    }

    fn partial_len(&self) -> usize {
        self.partial_stdout.len() + self.partial_stderr.len()
    }

    /// Takes everything collected so far, flushing unterminated lines.
    pub fn take(&mut self) -> (Vec<GuestLine>, usize) {
        for (stderr, buf) in [
            (false, &mut self.partial_stdout),
            (true, &mut self.partial_stderr),
        ] {
            if !buf.is_empty() {
                let level = if stderr {
                    LogLevel::Warn
                } else {
                    LogLevel::Info
                };
                let message = String::from_utf8_lossy(buf).into_owned();
                buf.clear();
                self.lines.push(GuestLine { level, message });
            }
        }
        self.used = 0;
        (
            std::mem::take(&mut self.lines),
            std::mem::take(&mut self.dropped_bytes),
        )
    }
}

/// Store data of one policy instance.
pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limits,
    /// Set when the guest asked for more memory than the cap allows.
    pub memory_cap_hit: bool,
    /// Linear memory the instance holds, all its memories together.
    pub memory_bytes: usize,
    /// Guest output of the current call.
    pub captured: Arc<Mutex<Captured>>,
    /// Data packed into the component, served through `artifact.get`.
    pub artifacts: Artifacts,
    /// The target's long histories during a `forecast` call, served through `long-history.get`.
    pub long_history: LongHistory,
}

/// Each metric's long history, shared with the pipeline that keeps it (no copy per call).
pub type LongHistory = Arc<Vec<CoarseHistory>>;

impl Sandbox {
    /// A sandbox granting nothing: no files, env, args or network, clocks
    /// frozen at the Unix epoch (policies get `now` in their input), and a
    /// fixed seed for the non-cryptographic RNG, so a call is reproducible.
    pub fn new(limits: Limits) -> Self {
        let captured = Arc::new(Mutex::new(Captured::default()));
        let out = |stderr| CapturedStream {
            captured: captured.clone(),
            cap: limits.output_bytes,
            stderr,
        };
        let wasi = WasiCtx::builder()
            .stdout(out(false))
            .stderr(out(true))
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .insecure_random_seed(0)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Sandbox {
            wasi,
            table: ResourceTable::new(),
            limits,
            memory_cap_hit: false,
            memory_bytes: 0,
            captured,
            artifacts: Artifacts::default(),
            long_history: LongHistory::default(),
        }
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl log::Host for Sandbox {
    fn log(&mut self, level: LogLevel, message: String) {
        let cap = self.limits.output_bytes;
        self.captured
            .lock()
            .expect("captured output lock")
            .push(cap, level, message);
    }
}

impl artifact::Host for Sandbox {
    fn get(&mut self, name: String) -> Option<Vec<u8>> {
        // Copied into the guest's memory, which the memory cap bounds.
        self.artifacts
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, data)| data.clone())
    }
}

impl long_history::Host for Sandbox {
    fn get(&mut self, name: String) -> Option<CoarseHistory> {
        // Copied into the guest's memory, which the memory cap bounds; the
        // pipeline bounds the points per metric.
        self.long_history.iter().find(|h| h.name == name).cloned()
    }
}

impl ResourceLimiter for Sandbox {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.memory_bytes {
            self.memory_cap_hit = true;
            return Ok(false);
        }
        // Creation reports current = 0, so this sums every memory's size.
        self.memory_bytes += desired.saturating_sub(current);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.limits.table_elements)
    }

    fn instances(&self) -> usize {
        // A component instantiates a handful of core instances (the guest,
        // the WASI adapter, shims); more means something unusual.
        32
    }

    fn tables(&self) -> usize {
        32
    }

    fn memories(&self) -> usize {
        4
    }
}

/// Clocks that always read zero: policies must use the `now` they are given.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Guest stdout or stderr: kept up to the byte cap, the rest dropped and
/// counted. Writes never fail, so a chatty guest is not killed by its output.
#[derive(Clone)]
struct CapturedStream {
    captured: Arc<Mutex<Captured>>,
    cap: usize,
    stderr: bool,
}

impl CapturedStream {
    fn write_bytes(&self, bytes: &[u8]) {
        self.captured
            .lock()
            .expect("captured output lock")
            .write_stream(self.cap, self.stderr, bytes);
    }
}

impl IsTerminal for CapturedStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedStream {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturedStream {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

impl tokio::io::AsyncWrite for CapturedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_into_lines_and_capped() {
        let mut c = Captured::default();
        c.write_stream(10, false, b"abc\nde");
        c.write_stream(10, false, b"f\n0123456789");
        let (lines, dropped) = c.take();
        let text: Vec<_> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(text, ["abc", "def", "01"]);
        assert_eq!(dropped, 8);
    }

    #[test]
    fn log_messages_share_the_budget() {
        let mut c = Captured::default();
        c.push(8, LogLevel::Info, "12345".into());
        c.push(8, LogLevel::Info, "6789".into());
        let (lines, dropped) = c.take();
        assert_eq!(lines.len(), 1);
        assert_eq!(dropped, 4);
    }
}
