//! Compiled components kept on disk, keyed by the component's digest and
//! the engine's compatibility hash, so a restarted operator (or a second
//! `check`) loads a large policy in milliseconds instead of recompiling it.
//!
//! Loading a compiled artifact runs native code that wasmtime produced, so
//! the folder must be writable only by the process itself: entries live in
//! a `compiled-v1` subfolder that is created mode 0700 and refused when
//! anyone else could write to it. A broken or incompatible entry is
//! removed and the component recompiled; a write failure only costs the
//! next start a compile.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::Engine;

use super::{Digest, RuntimeError};

/// The on-disk cache of one engine's compiled components.
pub(super) struct DiskCache {
    dir: PathBuf,
    /// Hex of the engine's compatibility hash: artifacts of another wasmtime
    /// version or configuration get other names.
    engine_key: String,
}

impl DiskCache {
    /// Opens (creating when needed) the cache under `root`.
    pub(super) fn open(root: &Path, engine: &Engine) -> Result<Self, RuntimeError> {
        let dir = root.join("compiled-v1");
        private_dir(&dir).map_err(RuntimeError::Cache)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(DiskCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", digest.hex(), self.engine_key))
    }

    /// The compiled component for `digest`, when a usable entry exists.
    #[allow(unsafe_code)]
    pub(super) fn load(&self, engine: &Engine, digest: &Digest) -> Option<Component> {
        let path = self.path(digest);
        if !path.exists() {
            return None;
        }
        // SAFETY: `deserialize_file` trusts the file to be wasmtime's own
        // output. Entries are written only by `store` below, from components
        // this process compiled, into a folder `open` made private to this
        // user; wasmtime itself refuses artifacts of another version or
        // configuration, and the engine key in the name keeps them apart.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "dropping an unusable compiled component");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes `component` for the next start; atomically, so a crash mid-write
    /// never leaves a truncated entry under the final name.
    pub(super) fn store(&self, digest: &Digest, component: &Component) {
        let path = self.path(digest);
        let result = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|bytes| write_atomically(&path, &bytes));
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not cache a compiled component");
        }
    }
}

/// Creates `dir` (mode 0700) when needed and refuses it when another user
/// owns it or others may write to it: what such a folder holds could have
/// been planted.
pub(crate) fn private_dir(dir: &Path) -> Result<(), String> {
    let refuse = |why: String| format!("{}: {why}", dir.display());
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| refuse(e.to_string()))?;
    let meta = fs::metadata(dir).map_err(|e| refuse(e.to_string()))?;
    let me = fs::metadata("/proc/self").map(|m| m.uid()).map_err(|e| {
        refuse(format!(
            "cannot tell this process's user to check the folder's owner: {e}"
        ))
    })?;
    if meta.uid() != me {
        return Err(refuse("is owned by another user".into()));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(refuse(
            "is writable by group or others; make it mode 0700".into(),
        ));
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary name, so a crash mid-write
/// never leaves a truncated file under the final name.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}
