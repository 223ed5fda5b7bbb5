//! Compiling a component in a child process under hard limits.
//!
//! A compile cannot be interrupted from inside the process, and the memory
//! it takes cannot be capped there, so an over-budget compile must run
//! where the kernel can stop it: a child process of the same binary (the
//! hidden `compile-worker` subcommand) that lowers its own priority, caps
//! its CPU time (`RLIMIT_CPU`) and address space (`RLIMIT_AS`), compiles
//! the bytes it reads on stdin and writes wasmtime's serialized artifact to
//! stdout. The parent also kills it past a wall-clock deadline, reads at
//! most [`MAX_ARTIFACT_BYTES`] of its answer, and deserializes it into its
//! own engine, whose configuration the child shares.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{CompileBudget, RuntimeError};

/// Largest serialized artifact accepted from a child (an 18 MB Python
/// component's is ~60 MB).
const MAX_ARTIFACT_BYTES: u64 = 512 << 20;
/// Most bytes of a child's error output kept.
const MAX_ERROR_BYTES: u64 = 4 << 10;
/// Exit status of a worker whose input did not compile.
const EXIT_INVALID: i32 = 2;
/// Exit status of a worker that could not set its limits.
const EXIT_LIMITS: i32 = 3;
/// How much lower the worker's scheduling priority is than the operator's.
const NICENESS: i32 = 10;

/// How to start a compile worker: a program and its arguments, to which
/// `--cpu-seconds N --memory-bytes N` are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl WorkerCommand {
    /// This very binary's `compile-worker` subcommand.
    pub fn this_binary() -> std::io::Result<Self> {
        Ok(WorkerCommand {
            program: std::env::current_exe()?,
            args: vec!["compile-worker".into()],
        })
    }
}

/// Compiles `bytes` in a child process within `budget`; returns the artifact.
pub(super) fn compile(
    worker: &WorkerCommand,
    budget: &CompileBudget,
    bytes: &[u8],
) -> Result<Vec<u8>, RuntimeError> {
    let started = Instant::now();
    let mut child = Command::new(&worker.program)
        .args(&worker.args)
        .arg("--cpu-seconds")
        .arg(budget.cpu.as_secs().max(1).to_string())
        .arg("--memory-bytes")
        .arg(budget.memory_bytes.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Nothing of the operator's environment is needed, and nothing leaks;
        // fewer malloc arenas keep the address space the budget counts close
        // to the memory really used.
        .env_clear()
        .env("MALLOC_ARENA_MAX", "2")
        .spawn()
        .map_err(|e| RuntimeError::Worker(format!("cannot start it: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let input = bytes.to_vec();
    // Writing and reading on their own threads: the pipes' buffers are far
    // smaller than a component, and the child reads all before it writes.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let reader = std::thread::spawn(move || read_up_to(stdout, MAX_ARTIFACT_BYTES + 1));
    let errors = std::thread::spawn(move || read_up_to(stderr, MAX_ERROR_BYTES));

    let deadline = started + budget.wall();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                let _ = child.kill();
                return Err(RuntimeError::Worker(format!("waiting for it: {e}")));
            }
        }
    };
    let _ = writer.join();
    let artifact = reader.join().unwrap_or_default();
    let message = String::from_utf8_lossy(&errors.join().unwrap_or_default())
        .trim()
        .to_string();
    let elapsed = started.elapsed();
    let Some(status) = status else {
        return Err(RuntimeError::CompileTimeout(budget.wall()));
    };
    judge(status, message, budget, elapsed)?;
    if artifact.len() as u64 > MAX_ARTIFACT_BYTES {
        return Err(RuntimeError::OverBudget(format!(
            "its compiled form is larger than {} MiB",
            MAX_ARTIFACT_BYTES >> 20
        )));
    }
    Ok(artifact)
}

/// Turns a worker's exit into the error it means, if any.
fn judge(
    status: ExitStatus,
    message: String,
    budget: &CompileBudget,
    elapsed: Duration,
) -> Result<(), RuntimeError> {
    use std::os::unix::process::ExitStatusExt;
    let memory = || {
        RuntimeError::OverBudget(format!(
            "compiling needed more than the {} MiB memory budget",
            budget.memory_bytes >> 20
        ))
    };
    let signal = status.signal();
    if signal == Some(rustix::process::Signal::XCPU.as_raw()) {
        return Err(RuntimeError::OverBudget(format!(
            "compiling needed more than the {} s CPU budget",
            budget.cpu.as_secs()
        )));
    }
    if signal == Some(rustix::process::Signal::KILL.as_raw()) {
        // The CPU hard limit, or the out-of-memory killer of the operator's cgroup.
        return Err(RuntimeError::OverBudget(format!(
            "the compile was killed after {:.1} s (over the {} s CPU or the memory budget)",
            elapsed.as_secs_f64(),
            budget.cpu.as_secs()
        )));
    }
    // Allocation failures abort the process (Rust's handler) or surface as
    // an error naming the failed mapping.
    let out_of_memory = message.contains("memory allocation of")
        || message.contains("Cannot allocate memory")
        || message.contains("out of memory");
    if out_of_memory {
        return Err(memory());
    }
    match (status.code(), signal) {
        (Some(0), _) => Ok(()),
        (Some(EXIT_INVALID), _) => Err(RuntimeError::Compile(message)),
        (Some(EXIT_LIMITS), _) => Err(RuntimeError::Worker(format!(
            "it could not limit itself: {message}"
        ))),
        (_, Some(s)) if s == rustix::process::Signal::ABORT.as_raw() => Err(memory()),
        (code, signal) => Err(RuntimeError::Worker(format!(
            "exit {code:?}, signal {signal:?}: {message}"
        ))),
    }
}

fn read_up_to(from: impl Read, limit: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = from.take(limit).read_to_end(&mut out);
    out
}

/// The child's side: limit this process, read a component on stdin,
/// compile it with the runtime's engine configuration and write the
/// artifact to stdout. Returns the process's exit status.
pub fn worker_main(cpu_seconds: u64, memory_bytes: u64) -> i32 {
    if let Err(e) = limit_self(cpu_seconds, memory_bytes) {
        eprintln!("{e}");
        return EXIT_LIMITS;
    }
    let mut bytes = Vec::new();
    let read = std::io::stdin()
        .take(super::MAX_COMPONENT_BYTES + 1)
        .read_to_end(&mut bytes);
    if let Err(e) = read {
        eprintln!("reading the component: {e}");
        return EXIT_INVALID;
    }
    let engine = match wasmtime::Engine::new(&super::engine_config()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("creating the engine: {e:#}");
            return EXIT_INVALID;
        }
    };
    let artifact = match engine.precompile_component(&bytes) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e:#}");
            return EXIT_INVALID;
        }
    };
    if let Err(e) = std::io::stdout().lock().write_all(&artifact) {
        eprintln!("writing the artifact: {e}");
        return EXIT_INVALID;
    }
    0
}

fn limit_self(cpu_seconds: u64, memory_bytes: u64) -> std::io::Result<()> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    // Die with the operator rather than compile for nobody.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    setrlimit(
        Resource::Cpu,
        Rlimit {
            current: Some(cpu_seconds),
            // SIGXCPU at the soft limit; SIGKILL at the hard one if that is ignored.
            maximum: Some(cpu_seconds + 5),
        },
    )?;
    setrlimit(
        Resource::As,
        Rlimit {
            current: Some(memory_bytes),
            maximum: Some(memory_bytes),
        },
    )?;
    // A killed compile must not leave a core dump of its memory behind.
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    // Compiling may use every core; ticks of the operator come first.
    rustix::process::nice(NICENESS)?;
    Ok(())
}
