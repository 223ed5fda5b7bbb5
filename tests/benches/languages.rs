//! The cost of the same policy (`ewma-trend`) written in Rust, Python,
//! JavaScript and C, measured side by side: component size, wasmtime
//! compile time and the peak memory it adds (measured in a child process), a cold load (compile,
//! instantiate, first call), a load from the on-disk compile cache (what a
//! restarted operator pays), an instance's linear memory, and the median
//! cost of one forecast on a reused instance.
//!
//! Run `scripts/build-policies` first, then
//! `cargo bench -p wasm-autoscaler-tests --bench languages`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use wasm_autoscaler::bundled;
use wasm_autoscaler::runtime::{synthetic, Runtime, RuntimeConfig};
use wasm_autoscaler_tests::fixtures::{built_policy, POLICY_LANGUAGES};

const COMPILES: usize = 3;
const DECISIONS: usize = 400;

fn runtime(cache_dir: Option<PathBuf>) -> Runtime {
    Runtime::new(RuntimeConfig {
        deadline: Duration::from_secs(5),
        cache_dir,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A `/proc/self/status` field in bytes.
fn status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

/// Flag that makes this binary compile one file and print the peak
/// resident memory the compile added: measured in a fresh process, so
/// memory an earlier compile left to the allocator does not hide it.
const CHILD_FLAG: &str = "--compile-peak-of";

fn child_compile_peak(path: &str) {
    let bytes = std::fs::read(path).unwrap();
    let rt = runtime(None);
    let before = status_kib("VmRSS:").unwrap();
    rt.load(&bytes).unwrap();
    println!("{}", status_kib("VmHWM:").unwrap().saturating_sub(before));
}

/// Peak resident memory added by compiling `bytes`, from a child process.
fn compile_peak(bytes: &[u8]) -> Option<u64> {
    let path =
        std::env::temp_dir().join(format!("wasm-autoscaler-peak-{}.wasm", std::process::id()));
    std::fs::write(&path, bytes).ok()?;
    let out = std::process::Command::new(std::env::current_exe().ok()?)
        .arg(CHILD_FLAG)
        .arg(&path)
        .output()
        .ok()?;
    let _ = std::fs::remove_file(&path);
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

struct Row {
    lang: &'static str,
    size: usize,
    compile: Duration,
    compile_rss: Option<u64>,
    cold: Duration,
    cached: Duration,
    instance_memory: usize,
    decision: Duration,
}

fn measure(lang: &'static str, bytes: &[u8]) -> Row {
    let request = synthetic::forecast_request(240, "");
    let compiles: Vec<Duration> = (0..COMPILES)
        .map(|_| {
            let rt = runtime(None);
            let start = Instant::now();
            rt.load(bytes).unwrap();
            start.elapsed()
        })
        .collect();
    let compile_rss = compile_peak(bytes);
    let first_call = |rt: &Runtime| {
        let start = Instant::now();
        let mut instance = rt.load(bytes).unwrap().instantiate().unwrap();
        instance.forecast(&request).unwrap();
        (start.elapsed(), instance)
    };
    let (cold, _) = first_call(&runtime(None));
    let dir = std::env::temp_dir().join(format!("wasm-autoscaler-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    first_call(&runtime(Some(dir.clone())));
    let restarted = runtime(Some(dir.clone()));
    let (cached, mut instance) = first_call(&restarted);
    assert_eq!(
        restarted.compilations(),
        0,
        "{lang}: the cached load compiled"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let decisions: Vec<Duration> = (0..DECISIONS)
        .map(|_| {
            let start = Instant::now();
            instance.forecast(&request).unwrap();
            start.elapsed()
        })
        .collect();
    Row {
        lang,
        size: bytes.len(),
        compile: median(compiles),
        compile_rss,
        cold,
        cached,
        instance_memory: instance.memory_bytes(),
        decision: median(decisions),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == CHILD_FLAG) {
        return child_compile_peak(&args[i + 1]);
    }
    let mut components: Vec<(&'static str, Vec<u8>)> = vec![("rust", bundled::EWMA_TREND.to_vec())];
    for lang in POLICY_LANGUAGES {
        match built_policy(lang) {
            Ok(bytes) => components.push((lang, bytes)),
            Err(why) => println!("SKIPPED {lang}: {why}"),
        }
    }
    let rows: Vec<Row> = components.iter().map(|(l, b)| measure(l, b)).collect();
    let rust = rows[0].decision.as_secs_f64();
    println!(
        "{:<7} {:>12} {:>11} {:>14} {:>11} {:>12} {:>12} {:>10} {:>8}",
        "policy",
        "size",
        "compile",
        "compile peak",
        "cold load",
        "cached load",
        "inst. memory",
        "decision",
        "vs rust"
    );
    for r in &rows {
        println!(
            "{:<7} {:>12} {:>11} {:>14} {:>11} {:>12} {:>12} {:>10} {:>7.1}×",
            r.lang,
            format!("{} B", r.size),
            ms(r.compile),
            r.compile_rss.map_or("n/a".into(), mib),
            ms(r.cold),
            ms(r.cached),
            mib(r.instance_memory as u64),
            format!("{:.1} µs", r.decision.as_secs_f64() * 1e6),
            r.decision.as_secs_f64() / rust,
        );
    }
    println!(
        "(compile: median of {COMPILES}; decision: median of {DECISIONS} forecasts of a 240-sample history on a reused instance)"
    );
}
