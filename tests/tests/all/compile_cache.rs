//! The on-disk cache of compiled components: a second runtime (a restarted
//! operator) loads from it without compiling, a damaged entry is recompiled,
//! and a folder others could write to is refused.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use wasm_autoscaler::bundled;
use wasm_autoscaler::runtime::{synthetic, Runtime, RuntimeConfig, RuntimeError};

fn folder(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("compile-cache")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn runtime(dir: &Path) -> Result<Runtime, RuntimeError> {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.to_path_buf()),
        ..RuntimeConfig::default()
    })
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("compiled-v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect()
}

/// Loads the bundled `ewma-trend` and makes one forecast with it.
fn forecast_with(rt: &Runtime) {
    let mut instance = rt.load(bundled::EWMA_TREND).unwrap().instantiate().unwrap();
    let r = instance
        .forecast(&synthetic::forecast_request(60, ""))
        .unwrap();
    assert_eq!(r.forecasts[0].points.len(), 8);
}

#[test]
fn a_restart_loads_from_the_cache_without_compiling() {
    let dir = folder("restart");
    let first = runtime(&dir).unwrap();
    forecast_with(&first);
    assert_eq!((first.compilations(), first.disk_hits()), (1, 0));
    let stored = entries(&dir);
    assert_eq!(stored.len(), 1, "{stored:?}");
    let name = stored[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with(&wasm_autoscaler::runtime::Digest::of(bundled::EWMA_TREND).hex()));

    let second = runtime(&dir).unwrap();
    forecast_with(&second);
    assert_eq!((second.compilations(), second.disk_hits()), (0, 1));
}

#[test]
fn a_damaged_entry_is_recompiled_and_replaced() {
    let dir = folder("damaged");
    forecast_with(&runtime(&dir).unwrap());
    let entry = entries(&dir).remove(0);
    std::fs::write(&entry, b"not a compiled component").unwrap();

    let rt = runtime(&dir).unwrap();
    forecast_with(&rt);
    assert_eq!((rt.compilations(), rt.disk_hits()), (1, 0));
    let again = runtime(&dir).unwrap();
    forecast_with(&again);
    assert_eq!((again.compilations(), again.disk_hits()), (0, 1));
}

#[test]
fn a_folder_others_can_write_is_refused() {
    let dir = folder("shared");
    runtime(&dir).unwrap();
    let inner = dir.join("compiled-v1");
    std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = runtime(&dir)
        .err()
        .expect("a world-writable cache is refused");
    assert!(matches!(e, RuntimeError::Cache(_)), "{e}");
    assert!(e.to_string().contains("writable by group or others"), "{e}");
}
