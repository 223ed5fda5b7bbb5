//! The `wasm-autoscaler` binary as a user runs it.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use wasm_autoscaler::bundled;

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasm-autoscaler"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// A fresh file under the test's scratch folder, in a folder of its own: tests run in parallel,
/// and a shared file rewritten by one (a write truncates first) was read half-written by another.
fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let call = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("cli")
        .join(format!("{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The first two days of the bundled trace, as a file.
fn short_trace() -> PathBuf {
    let text: String = bundled::TRACE
        .lines()
        .take(1 + 2880)
        .map(|l| format!("{l}\n"))
        .collect();
    scratch("two-days.csv", text.as_bytes())
}

#[test]
fn check_accepts_each_bundled_policy_and_names_its_world() {
    for (name, bytes, world, config) in [
        ("hpa", bundled::HPA, "decider", r#"{"target": 0.7}"#),
        ("ewma-trend", bundled::EWMA_TREND, "predictor", ""),
        (
            "forecast",
            bundled::FORECAST,
            "decider",
            r#"{"capacityPerPod": 50}"#,
        ),
        ("adaptive", bundled::ADAPTIVE, "predictor", ""),
        ("seasonal", bundled::SEASONAL, "predictor", ""),
        (
            "weighted",
            bundled::WEIGHTED,
            "decider",
            r#"{"signals": [{"metric": "rps", "perPod": 50}]}"#,
        ),
    ] {
        let path = scratch(&format!("{name}.wasm"), bytes);
        let out = bin(&["check", path.to_str().unwrap(), "--config", config]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains(&format!("{world} component")), "{text}");
        assert!(text.contains("validate-config: ok"), "{text}");
        assert!(text.contains("smoke call:"), "{text}");
    }
}

#[test]
fn check_rejects_what_is_not_a_policy_with_one_clear_line() {
    let core = wat::parse_str("(module)").unwrap();
    let other = wat::parse_str(include_str!("../../tests/fixtures/not-a-policy.wat")).unwrap();
    for (name, bytes, needle) in [
        (
            "notes.txt",
            b"just some text\n".to_vec(),
            "not a WebAssembly component",
        ),
        (
            "core.wasm",
            core,
            "a core WebAssembly module, not a component",
        ),
        ("other.wasm", other, "does not implement a policy world"),
    ] {
        let path = scratch(name, &bytes);
        let out = bin(&["check", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{name} was accepted");
        let err = stderr(&out);
        assert!(err.contains(needle), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
    }
}

#[test]
fn check_reports_a_rejected_config() {
    let path = scratch("forecast-bad.wasm", bundled::FORECAST);
    let out = bin(&[
        "check",
        path.to_str().unwrap(),
        "--config",
        r#"{"capacityPerPod": 0}"#,
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("capacityPerPod"), "{}", stderr(&out));
}

/// A reader that stops early (`simulate | head`) ends the output; the command
/// neither panics nor reports an error.
#[test]
fn a_closed_stdout_ends_the_output_quietly() {
    let trace = short_trace();
    for args in [
        vec!["wit"],
        vec!["simulate", "--trace", trace.to_str().unwrap(), "--json"],
    ] {
        // The read end is closed before the command starts, so its first write fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_wasm-autoscaler"))
            .args(&args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

#[test]
fn simulate_json_is_deterministic_and_includes_the_baseline() {
    let trace = short_trace();
    let args = ["simulate", "--trace", trace.to_str().unwrap(), "--json"];
    let (a, b) = (bin(&args), bin(&args));
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(a.stdout, b.stdout, "two runs printed different JSON");
    let report: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let names: Vec<&str> = report["setups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["setup"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hpa", "reactive", "predictive", "adaptive"]);
    assert_eq!(report["trace"]["durationSeconds"], 2 * 86_400);
    // The clairvoyant limit: no violations, fewer pod-hours than any set-up,
    // and each set-up's cost as a multiple of it.
    let limit = &report["limit"];
    assert_eq!(limit["setup"], "limit");
    assert_eq!(limit["sloViolationSeconds"], 0);
    let limit_hours = limit["podHours"].as_f64().unwrap();
    for s in report["setups"].as_array().unwrap() {
        let hours = s["podHours"].as_f64().unwrap();
        let ratio = s["podHoursVsLimit"].as_f64().unwrap();
        assert!(hours > limit_hours, "{s}");
        assert!((ratio - hours / limit_hours).abs() < 0.001, "{s}");
    }
}

#[test]
fn no_arguments_replays_the_bundled_trace_through_the_bundled_setups() {
    let out = bin(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("trace wc98_1998-06-10_group-stage_60s.csv — 7.0 days"),
        "{text}"
    );
    assert!(text.contains("SLO utilization 80%"), "{text}");
    for setup in ["hpa", "reactive", "predictive", "adaptive"] {
        assert!(
            text.lines().any(|l| l.starts_with(setup)),
            "{setup} missing: {text}"
        );
    }
}

#[test]
fn simulate_draws_a_plot_and_prints_a_table() {
    let trace = short_trace();
    let plot = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("cli")
        .join("plot.svg");
    let out = bin(&[
        "simulate",
        "--trace",
        trace.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("overload s") && table.contains("×limit"),
        "{table}"
    );
    assert!(table.lines().any(|l| l.starts_with("limit ")), "{table}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    // Four set-ups, each drawn whole and zoomed, four lines per panel.
    assert!(svg.starts_with("<svg"), "{svg}");
    assert_eq!(svg.matches("<polyline").count(), 4 * 2 * 4);
    assert!(
        svg.contains("hpa — SLO-violation"),
        "titled with its summary"
    );
    assert!(svg.contains(">d2 00:00<"), "a time axis in days");
    assert!(
        svg.contains(r#"fill-opacity="0.25""#),
        "HPA violates the SLO: shaded"
    );

    let zoomed = bin(&[
        "simulate",
        "--trace",
        trace.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
        "--plot-window",
        "30..31.5",
    ]);
    assert!(zoomed.status.success(), "{}", stderr(&zoomed));
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.contains("zoom: d2 06:00 – d2 07:30"),
        "the window asked for"
    );
    for window in ["31..30", "x..2", "0..49"] {
        let out = bin(&[
            "simulate",
            "--trace",
            trace.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
            "--plot-window",
            window,
        ]);
        assert!(!out.status.success(), "{window} was accepted");
        assert!(stderr(&out).contains("plot-window"), "{}", stderr(&out));
    }
}

#[test]
fn simulate_runs_setups_from_a_file_and_adds_the_baseline() {
    let trace = short_trace();
    let setups = scratch(
        "setups.json",
        br#"[{"name": "eager", "decider": {"policy": "bundled:forecast", "config": {"capacityPerPod": 64}},
              "behavior": {"scaleDown": {"stabilizationSeconds": 60}}}]"#,
    );
    let out = bin(&[
        "simulate",
        "--trace",
        trace.to_str().unwrap(),
        "--setups",
        setups.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["setups"][0]["setup"], "hpa");
    assert_eq!(report["setups"][1]["setup"], "eager");
}

#[test]
fn simulate_refuses_bad_input_clearly() {
    let bad_trace = scratch("bad.csv", b"t_seconds,rps\n0,1\n60,oops\n");
    let out = bin(&["simulate", "--trace", bad_trace.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("line 3: `oops` is not a request rate"),
        "{}",
        stderr(&out)
    );

    let trace = short_trace();
    let wrong = scratch(
        "wrong-world.json",
        br#"[{"name": "upside-down", "decider": {"policy": "bundled:ewma-trend"}}]"#,
    );
    let out = bin(&[
        "simulate",
        "--trace",
        trace.to_str().unwrap(),
        "--setups",
        wrong.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("implements the predictor world, but is used as a decider"),
        "{}",
        stderr(&out)
    );

    let out = bin(&["simulate", "--min-replicas", "9", "--max-replicas", "3"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--min-replicas (9) is above --max-replicas (3)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn simulate_replays_a_manifest_with_its_configmap_policy() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/examples/autoscaler.yaml"
    );
    let trace = short_trace();
    // Without the ConfigMap its decider comes from, the replay says what is missing.
    let out = bin(&[
        "simulate",
        "--trace",
        trace.to_str().unwrap(),
        "--file",
        example,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("ConfigMap `demo-policy` is not in the given files"),
        "{}",
        stderr(&out)
    );
    let map = scratch("demo-policy.yaml", b"");
    let out = bin(&[
        "export",
        "forecast",
        "--configmap",
        "demo-policy",
        "--key",
        "decider.wasm",
        "-o",
        map.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = bin(&[
        "simulate",
        "--trace",
        trace.to_str().unwrap(),
        "--file",
        example,
        "--file",
        map.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = report["setups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["setup"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hpa", "demo"]);
    // The manifest's bounds and interval govern the replay.
    assert_eq!(report["params"]["maxReplicas"], 10);
    assert_eq!(report["params"]["intervalSeconds"], 15);
    assert!(report["setups"][1]["peakReplicas"].as_u64().unwrap() <= 10);
}

#[test]
fn simulate_names_a_manifest_metric_it_cannot_feed() {
    let manifest = scratch(
        "queue.yaml",
        br#"apiVersion: wasmautoscaler.dev/v1alpha1
kind: WasmAutoscaler
metadata: {name: queue}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: worker}
  maxReplicas: 5
  metrics: [{name: depth, prometheus: {address: "http://p:9090", query: "sum(queue_depth)"}}]
  decider: {bundled: forecast, config: {metric: depth, capacityPerPod: 100}}
"#,
    );
    let trace = short_trace();
    let out = bin(&[
        "simulate",
        "--trace",
        trace.to_str().unwrap(),
        "-f",
        manifest.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--metric depth=rps"),
        "{}",
        stderr(&out)
    );
    let out = bin(&[
        "simulate",
        "--trace",
        trace.to_str().unwrap(),
        "-f",
        manifest.to_str().unwrap(),
        "--metric",
        "depth=rps",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Serves `body` as `/metrics` on a loopback port, to any number of requests.
fn exporter(body: &'static str) -> u16 {
    wasm_autoscaler_tests::fixtures::serve_text("127.0.0.1", move || body.to_string())
}

#[test]
fn metrics_fetches_each_metric_once_and_reports_its_health() {
    let port =
        exporter("# TYPE queue_depth gauge\nqueue_depth{q=\"a\"} 12\nqueue_depth{q=\"b\"} 30\n");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let manifest = scratch(
        "metrics.yaml",
        format!(
            r#"apiVersion: wasmautoscaler.dev/v1alpha1
kind: WasmAutoscaler
metadata: {{name: worker}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: worker}}
  maxReplicas: 5
  metrics:
    - name: depth
      scrape: {{port: 9090, metric: queue_depth, endpoints: ["127.0.0.1:{port}"]}}
    - name: rps
      prometheus: {{address: "http://127.0.0.1:{closed}", query: "sum(rate(x[1m]))"}}
  decider: {{bundled: forecast, config: {{metric: depth, capacityPerPod: 10}}}}
"#
        )
        .as_bytes(),
    );
    let out = bin(&[
        "metrics",
        "-f",
        manifest.to_str().unwrap(),
        "--json",
        "--timeout",
        "1s",
    ]);
    assert!(
        !out.status.success(),
        "an unavailable metric fails the command"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report[0]["name"], "depth");
    assert_eq!(report[0]["health"], "ok");
    assert_eq!(report[0]["value"], 42.0);
    assert_eq!(report[1]["health"], "unavailable");
    assert_eq!(report[1]["kind"], "request");
    assert!(
        stderr(&out).contains("some metrics are unavailable"),
        "{}",
        stderr(&out)
    );
    let table = bin(&[
        "metrics",
        "-f",
        manifest.to_str().unwrap(),
        "--timeout",
        "1s",
    ]);
    let text = stdout(&table);
    assert!(text.contains("depth") && text.contains("42"), "{text}");
    assert!(text.contains("unavailable"), "{text}");
}

/// The `ewma-trend` component `scripts/build-policies` wrote for `lang`;
/// `None`, said on stderr, when it was not built, unless
/// `WASM_AUTOSCALER_REQUIRE_LANGUAGES=1` (set by `scripts/test`) makes that a failure.
fn built_policy(lang: &str, what: &str) -> Option<PathBuf> {
    let path = wasm_autoscaler_tests::fixtures::built_policy_path(lang);
    if path.exists() {
        return Some(path);
    }
    assert_ne!(
        std::env::var("WASM_AUTOSCALER_REQUIRE_LANGUAGES").as_deref(),
        Ok("1"),
        "{} is missing",
        path.display()
    );
    eprintln!(
        "SKIPPED {what} with {}: not built (run scripts/build-policies)",
        path.display()
    );
    None
}

/// The policies `scripts/build-policies` writes, checked as an author would
/// check theirs. Skipped (and said so) when they were not built, unless
/// `WASM_AUTOSCALER_REQUIRE_LANGUAGES=1` (set by `scripts/test`).
#[test]
fn check_accepts_policies_built_in_other_languages() {
    for lang in ["python", "js", "c", "zig"] {
        let Some(path) = built_policy(lang, "check") else {
            continue;
        };
        let out = bin(&[
            "check",
            path.to_str().unwrap(),
            "--config",
            r#"{"alpha": 0.4}"#,
        ]);
        assert!(out.status.success(), "{lang}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("predictor component"), "{lang}: {text}");
        assert!(text.contains("validate-config: ok"), "{lang}: {text}");
        assert!(
            text.contains("smoke call: forecast returned 1 metric(s)"),
            "{lang}: {text}"
        );
    }
}

#[test]
fn export_compresses_a_component_file_into_a_configmap_or_says_it_cannot_fit() {
    let raw = scratch("forecast-raw.wasm", b"");
    let out = bin(&["export", "forecast", "-o", raw.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&raw).unwrap(), bundled::FORECAST);

    let map = scratch("forecast-zst.yaml", b"");
    let out = bin(&[
        "export",
        raw.to_str().unwrap(),
        "--configmap",
        "forecast",
        "--key",
        "decider.wasm.zst",
        "-o",
        map.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cm: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&map).unwrap()).unwrap();
    let stored = cm["binaryData"]["decider.wasm.zst"].as_str().unwrap();
    // base64 of a zstd frame (magic 28 b5 2f fd), smaller than the component.
    assert!(stored.starts_with("KLUv/"), "{}", &stored[..16]);
    assert!(stored.len() * 3 / 4 < bundled::FORECAST.len());

    // 3 MB that do not compress: no ConfigMap is written, and the error says why and what to do.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect();
    let big = scratch("big.wasm", &noise);
    let refused = scratch("big.yaml", b"untouched");
    let out = bin(&[
        "export",
        big.to_str().unwrap(),
        "--configmap",
        "big",
        "--key",
        "policy.wasm.zst",
        "-o",
        refused.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("more than a ConfigMap holds (1 MiB) even compressed"),
        "{err}"
    );
    assert!(err.contains("mount it as a file"), "{err}");
    assert_eq!(std::fs::read(&refused).unwrap(), b"untouched");
}

#[test]
fn wit_prints_the_contract_policies_are_built_against() {
    let out = bin(&["wit"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/policy.wit")).unwrap();
    assert_eq!(stdout(&out), checked_in);
}

#[test]
fn check_measures_the_code_and_refuses_a_component_over_the_compile_budget() {
    use wasm_autoscaler_tests::fixtures::compile_bomb;
    let forecast = scratch("budget-forecast.wasm", bundled::FORECAST);
    let out = bin(&[
        "check",
        forecast.to_str().unwrap(),
        "--config",
        r#"{"capacityPerPod": 5}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("code: "), "{}", stdout(&out));

    // Within every size limit, yet over a minute of compiling: the CPU budget stops it.
    let bomb = scratch("bomb.wasm", &compile_bomb(17_000, 1));
    let started = std::time::Instant::now();
    let out = bin(&["check", bomb.to_str().unwrap(), "--compile-cpu", "3s"]);
    let took = started.elapsed();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("over the compile budget") && err.contains("3 s CPU budget"),
        "{err}"
    );
    println!("compile bomb refused by `check --compile-cpu 3s` after {took:.1?}");

    // One function past the size limit is refused before anything compiles.
    let long = scratch("long-function.wasm", &compile_bomb(80_000, 2));
    let out = bin(&["check", long.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("largest function"), "{err}");
    let out = bin(&[
        "check",
        long.to_str().unwrap(),
        "--compile-max-function-kib",
        "16",
    ]);
    assert!(
        stderr(&out).contains("above the limit of 16384"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_memory_budget_holds_the_compile_of_a_large_policy() {
    let Some(python) = built_policy("python", "the memory budget") else {
        return;
    };
    // Compiling it maps about 450 MiB: refused under 300, accepted under the default 1024.
    let out = bin(&[
        "check",
        python.to_str().unwrap(),
        "--compile-memory-mib",
        "300",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("300 MiB memory budget"),
        "{}",
        stderr(&out)
    );
    let out = bin(&[
        "check",
        python.to_str().unwrap(),
        "--config",
        r#"{"alpha": 0.4}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn simulate_reads_file_policies_as_the_operator_does() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-files");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("decider.wasm"), bundled::FORECAST).unwrap();
    let manifest = |file: &str| {
        let path = dir.join("autoscaler.yaml");
        std::fs::write(
            &path,
            format!(
                r#"apiVersion: wasmautoscaler.dev/v1alpha1
kind: WasmAutoscaler
metadata: {{name: files}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}
  maxReplicas: 20
  metrics: [{{name: rps, scrape: {{port: 80, metric: rps}}}}]
  decider: {{file: "{file}", config: {{metric: rps, capacityPerPod: 10}}}}
"#
            ),
        )
        .unwrap();
        path
    };
    let trace = short_trace();
    let run = |file: &str, extra: &[&str]| {
        let path = manifest(file);
        let mut args = vec!["simulate", "--trace", trace.to_str().unwrap(), "--file"];
        args.push(path.to_str().unwrap());
        args.extend_from_slice(extra);
        let started = std::time::Instant::now();
        let out = bin(&args);
        (out, started.elapsed())
    };
    let (out, _) = run("decider.wasm", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, took) = run("/dev/zero", &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is outside the folders"),
        "{}",
        stderr(&out)
    );
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    let (out, _) = run("/dev/zero", &["--allow-file-root", "/dev"]);
    assert!(
        stderr(&out).contains("is a device, not a regular file"),
        "{}",
        stderr(&out)
    );
    let (out, _) = run("../cli/forecast.wasm", &[]);
    assert!(
        stderr(&out).contains("is outside the folders"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn metrics_takes_a_token_from_a_secret_manifest() {
    use std::io::{Read, Write};
    // A Prometheus API peer that answers only the right token.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 8192];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_lowercase();
            let (status, body) = if request.contains("authorization: bearer s3cret") {
                (
                    "200 OK",
                    r#"{"status":"success","data":{"resultType":"scalar","result":[1,"5"]}}"#,
                )
            } else {
                ("401 Unauthorized", "who are you")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let manifest = scratch(
        "secret-metrics.yaml",
        format!(
            r#"apiVersion: wasmautoscaler.dev/v1alpha1
kind: WasmAutoscaler
metadata: {{name: worker}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: worker}}
  maxReplicas: 5
  metrics:
    - name: rps
      prometheus:
        address: "http://127.0.0.1:{port}"
        query: up
        bearerTokenSecret: {{name: reader, key: token}}
  decider: {{bundled: forecast, config: {{metric: rps, capacityPerPod: 10}}}}
"#
        )
        .as_bytes(),
    );
    let out = bin(&["metrics", "-f", manifest.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report[0]["kind"], "secret_not_found", "{report}");
    let secret = scratch(
        "reader-secret.yaml",
        b"apiVersion: v1\nkind: Secret\nmetadata: {name: reader}\nstringData: {token: s3cret}\n",
    );
    let out = bin(&[
        "metrics",
        "-f",
        manifest.to_str().unwrap(),
        "-f",
        secret.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report[0]["value"], 5.0, "{report}");
    // A manifest still naming a token file is refused with the way forward.
    let old = scratch(
        "old-metrics.yaml",
        std::fs::read_to_string(&manifest)
            .unwrap()
            .replace(
                "bearerTokenSecret: {name: reader, key: token}",
                "bearerTokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token",
            )
            .as_bytes(),
    );
    let out = bin(&["metrics", "-f", old.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("use bearerTokenSecret"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn simulate_replays_the_scale_to_zero_and_schedule_examples() {
    // Two days from Monday 2026-06-15 00:00 UTC: nothing at night, 300 rps
    // from 06:00 to 16:00 UTC (08:00–18:00 in Berlin).
    let mut csv = String::from("t_seconds,rps\n");
    for minute in 0..2 * 1440u64 {
        let hour = (minute % 1440) / 60;
        let rps = if (6..16).contains(&hour) { 300 } else { 0 };
        csv.push_str(&format!("{},{rps}\n", minute * 60));
    }
    let trace = scratch("office-hours.csv", csv.as_bytes());
    let example = |name: &str| format!("{}/../deploy/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let run = |file: &str| {
        let out = bin(&[
            "simulate",
            "--trace",
            trace.to_str().unwrap(),
            "--start",
            "2026-06-15T00:00:00Z",
            "--capacity",
            "20",
            "--file",
            &example(file),
            "--json",
        ]);
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()
    };
    let zero = run("scale-to-zero.yaml");
    assert_eq!(zero["params"]["minReplicas"], 0);
    let (hpa, consumer) = (&zero["setups"][0], &zero["setups"][1]);
    assert_eq!(consumer["setup"], "orders-consumer");
    assert_eq!(hpa["coldStartSeconds"], 0, "the baseline keeps a pod");
    let cold = consumer["coldStartSeconds"].as_u64().unwrap();
    assert!(
        cold > 0 && cold <= 2 * 75,
        "one cold start a morning: {cold}"
    );
    assert!(
        consumer["podHours"].as_f64() < hpa["podHours"].as_f64(),
        "{zero}"
    );

    let shop = run("schedule.yaml");
    let (hpa, scheduled) = (&shop["setups"][0], &shop["setups"][1]);
    assert_eq!(scheduled["setup"], "shop");
    assert_eq!(scheduled["failedForecasts"], 0, "{shop}");
    assert_eq!(
        scheduled["sloViolationSeconds"], 0,
        "the mornings are met: {shop}"
    );
    assert!(hpa["sloViolationSeconds"].as_u64().unwrap() > 0, "{shop}");
}

#[test]
fn the_adaptive_example_manifest_is_the_bundled_adaptive_setup() {
    let trace = short_trace();
    let example = format!(
        "{}/../deploy/examples/adaptive.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let replay = |extra: &[&str]| {
        let mut args = vec![
            "simulate",
            "--trace",
            trace.to_str().unwrap(),
            "--capacity",
            "50",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = bin(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let (manifest, bundled) = (replay(&["--file", &example]), replay(&[]));
    let mut web = manifest["setups"][1].clone();
    let adaptive = &bundled["setups"][3];
    assert_eq!(
        (web["setup"].as_str(), adaptive["setup"].as_str()),
        (Some("web"), Some("adaptive"))
    );
    web["setup"] = adaptive["setup"].clone();
    assert_eq!(
        &web, adaptive,
        "the manifest replays exactly as the bundled set-up"
    );
    assert!(
        web["sloViolationSeconds"].as_u64() < manifest["setups"][0]["sloViolationSeconds"].as_u64()
    );
}

#[test]
fn push_prints_a_pinned_reference_that_check_and_simulate_pull() {
    use wasm_autoscaler_tests::registry::{RegistryServer, PASSWORD, USER};
    let registry = RegistryServer::start_with_login();
    let component = scratch("pushed-forecast.wasm", bundled::FORECAST);
    let target = format!("{}/team/forecast:v1", registry.address);
    let run = |args: &[&str], password: &str| {
        Command::new(env!("CARGO_BIN_EXE_wasm-autoscaler"))
            .args(args)
            .env("WASM_AUTOSCALER_REGISTRY_PASSWORD", password)
            .output()
            .expect("the binary runs")
    };
    let login = ["--plain-http", "--username", USER];
    let denied = run(
        &[&["push", component.to_str().unwrap(), &target][..], &login].concat(),
        "guess",
    );
    assert!(!denied.status.success());
    let pushed = run(
        &[&["push", component.to_str().unwrap(), &target][..], &login].concat(),
        PASSWORD,
    );
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    let reference = stdout(&pushed).trim().to_string();
    assert!(
        reference.starts_with(&format!("{}/team/forecast@sha256:", registry.address)),
        "{reference}"
    );
    assert!(
        stderr(&pushed).contains("decider component"),
        "{}",
        stderr(&pushed)
    );

    let oci = format!("oci:{reference}");
    let config = r#"{"capacityPerPod": 64}"#;
    let checked = run(
        &[&["check", &oci, "--config", config][..], &login].concat(),
        PASSWORD,
    );
    assert!(checked.status.success(), "{}", stderr(&checked));
    assert!(
        stdout(&checked).contains("decider component"),
        "{}",
        stdout(&checked)
    );
    // A tag is refused before anything is asked of the registry.
    let tagged = run(
        &[&["check", &format!("oci:{target}")][..], &login].concat(),
        PASSWORD,
    );
    assert!(!tagged.status.success());
    assert!(
        stderr(&tagged).contains("tags are not accepted"),
        "{}",
        stderr(&tagged)
    );

    let setups = scratch(
        "oci-setups.json",
        format!(r#"[{{"name": "pulled", "decider": {{"policy": "{oci}", "config": {config}}}}},
                    {{"name": "bundled", "decider": {{"policy": "bundled:forecast", "config": {config}}}}}]"#)
            .as_bytes(),
    );
    let trace = short_trace();
    let args = [
        "simulate",
        "--trace",
        trace.to_str().unwrap(),
        "--setups",
        setups.to_str().unwrap(),
        "--json",
    ];
    let out = run(&[&args[..], &login].concat(), PASSWORD);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Everything but the name: the pulled component is the bundled one.
    let summary = |i: usize| {
        let mut s = report["setups"][i].clone();
        s.as_object_mut().unwrap().remove("setup");
        s
    };
    assert_eq!(report["setups"][1]["setup"], "pulled");
    assert!(summary(1)["podHours"].as_f64().unwrap() > 0.0);
    assert_eq!(summary(1), summary(2));

    // The example autoscaler with its decider as an `oci` source replays as from its ConfigMap.
    let example = include_str!("../../deploy/examples/autoscaler.yaml");
    let from_registry = example.replace(
        "    configMapRef:\n      name: demo-policy\n      key: decider.wasm\n",
        &format!("    oci:\n      reference: {reference}\n"),
    );
    assert_ne!(from_registry, example);
    let manifest = scratch("oci-autoscaler.yaml", from_registry.as_bytes());
    let args = [
        "simulate",
        "--trace",
        trace.to_str().unwrap(),
        "--file",
        manifest.to_str().unwrap(),
        "--json",
    ];
    let out = run(&[&args[..], &login].concat(), PASSWORD);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["setups"][1]["setup"], "demo");
    assert!(report["setups"][1]["podHours"].as_f64().unwrap() > 0.0);
}
