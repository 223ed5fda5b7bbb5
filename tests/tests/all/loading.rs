//! What the loader refuses, and how it says so.

use wasm_autoscaler::runtime::{Runtime, RuntimeConfig, RuntimeError};

fn load(bytes: &[u8]) -> Result<(), RuntimeError> {
    Runtime::new(RuntimeConfig::default())
        .unwrap()
        .load(bytes)
        .map(drop)
}

#[test]
fn a_text_file_is_not_wasm() {
    let e = load(b"apiVersion: v1\nkind: ConfigMap\n").unwrap_err();
    assert!(matches!(e, RuntimeError::NotWasm), "{e}");
    assert!(e.to_string().contains("\\0asm"), "{e}");
}

#[test]
fn a_core_module_is_named_as_such() {
    let core =
        wat::parse_str(r#"(module (func (export "decide") (result i32) i32.const 3))"#).unwrap();
    let e = load(&core).unwrap_err();
    assert!(matches!(e, RuntimeError::CoreModule), "{e}");
    assert!(e.to_string().contains("wasm32-wasip2"), "{e}");
}

#[test]
fn truncated_bytes_fail_to_compile() {
    let bytes = wasm_autoscaler::bundled::HPA;
    let e = load(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(e, RuntimeError::Compile(_)), "{e}");
}

#[test]
fn a_component_of_another_world_is_refused() {
    let other = wat::parse_str(include_str!("../../fixtures/not-a-policy.wat")).unwrap();
    let e = load(&other).unwrap_err();
    assert!(matches!(e, RuntimeError::WrongWorld(_)), "{e}");
    assert!(e.to_string().contains("neither `forecast`"), "{e}");
    assert!(e.to_string().contains("greet"), "{e}");
}

#[test]
fn a_decide_export_of_the_wrong_type_is_refused() {
    let wrong = wat::parse_str(
        r#"(component
            (core module $m (func (export "f") (result i32) i32.const 1))
            (core instance $i (instantiate $m))
            (func (export "decide") (result u32) (canon lift (core func $i "f"))))"#,
    )
    .unwrap();
    let e = load(&wrong).unwrap_err();
    assert!(matches!(e, RuntimeError::WrongWorld(_)), "{e}");
    assert!(e.to_string().contains("decider world"), "{e}");
}

#[test]
fn an_import_the_host_lacks_is_named() {
    let needy = wat::parse_str(
        r#"(component
            (import "acme:net/raw-socket" (instance (export "open" (func (result u32)))))
            (core module $m (func (export "f") (result i32) i32.const 1))
            (core instance $i (instantiate $m))
            (func (export "decide") (result u32) (canon lift (core func $i "f"))))"#,
    )
    .unwrap();
    let e = load(&needy).unwrap_err();
    assert!(
        matches!(e, RuntimeError::UnsupportedImport(ref i) if i == "acme:net/raw-socket"),
        "{e}"
    );
}

#[test]
fn random_bytes_are_refused() {
    // A fixed xorshift sequence: random-looking, the same every run.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    assert!(matches!(load(&bytes), Err(RuntimeError::NotWasm)));
    let mut headed = b"\0asm\x0d\x00\x01\x00".to_vec();
    headed.extend_from_slice(&bytes);
    assert!(matches!(load(&headed), Err(RuntimeError::Compile(_))));
}

#[test]
fn a_digest_that_does_not_match_the_pin_is_refused() {
    use wasm_autoscaler::operator::crd::PolicySource;
    use wasm_autoscaler::operator::policies::{check, LoadError};
    use wasm_autoscaler::runtime::{Digest, World};
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let bytes = wasm_autoscaler::bundled::FORECAST;
    let mut source = PolicySource {
        config_map_ref: None,
        file: None,
        bundled: Some("forecast".into()),
        oci: None,
        config: Some(serde_json::json!({"capacityPerPod": 10})),
        sha256: Some("0".repeat(64)),
    };
    let Err(e) = check(&rt, &source, bytes, World::Decider) else {
        panic!("a wrong pin was accepted")
    };
    assert!(matches!(e, LoadError::PinMismatch { .. }), "{e}");
    assert!(
        e.to_string().contains("does not match the pinned sha256"),
        "{e}"
    );
    assert_eq!(rt.compilations(), 0, "refused before compiling");
    source.sha256 = Some(Digest::of(bytes).hex());
    assert!(check(&rt, &source, bytes, World::Decider).is_ok());
}

#[test]
fn concurrent_loads_of_one_digest_compile_it_once() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let bytes = wasm_autoscaler::bundled::EWMA_TREND;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| rt.load(bytes).unwrap());
        }
    });
    assert_eq!(rt.compilations(), 1);
}

/// `bytes` with every `@0.1.1` in it (the contract's version in import
/// names) changed to `@0.1.0`: a component as a 0.1.0 toolchain built it.
fn as_built_against_0_1_0(bytes: &[u8]) -> Vec<u8> {
    let (new, old) = (b"@0.1.1", b"@0.1.0");
    let mut out = bytes.to_vec();
    let mut found = 0;
    let mut i = 0;
    while i + new.len() <= out.len() {
        if &out[i..i + new.len()] == new {
            out[i..i + new.len()].copy_from_slice(old);
            found += 1;
        }
        i += 1;
    }
    assert!(found > 0, "the component names no @0.1.1 import");
    out
}

#[test]
fn a_component_built_against_contract_0_1_0_still_runs() {
    use wasm_autoscaler::runtime::synthetic;
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let old = as_built_against_0_1_0(wasm_autoscaler::bundled::ADAPTIVE);
    let policy = rt
        .load(&old)
        .expect("a 0.1.0 component links with the 0.1.1 host");
    assert!(
        policy
            .info()
            .imports
            .iter()
            .any(|i| i == "wasm-autoscaler:policy/log@0.1.0"),
        "{:?}",
        policy.info().imports
    );
    let request = synthetic::forecast_request(240, r#"{"metric": "rps"}"#);
    let ours = rt
        .load(wasm_autoscaler::bundled::ADAPTIVE)
        .unwrap()
        .instantiate()
        .unwrap()
        .forecast(&request)
        .unwrap();
    let theirs = policy.instantiate().unwrap().forecast(&request).unwrap();
    let values = |r: &wasm_autoscaler::runtime::bindings::ForecastResponse| {
        r.forecasts[0]
            .points
            .iter()
            .map(|p| (p.time_ms, p.value))
            .collect::<Vec<_>>()
    };
    assert!(!values(&ours).is_empty());
    assert_eq!(values(&theirs), values(&ours));
}
