//! Pulled artifacts kept on disk by digest, beside the compile cache, so a
//! restarted operator neither downloads a component again nor loses it
//! while its registry is down.
//!
//! Whoever pulled a private artifact must not lend it to another namespace
//! that only knows its digest: a cached blob is served after the registry
//! has answered this namespace's own manifest request, and served without
//! the registry (while it cannot be reached) only to a namespace that
//! pulled that reference before. Every entry is checked against its digest
//! when read, so a damaged file is a miss, never a wrong component.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::Reference;
use crate::boundary::files::read_bounded;
use crate::runtime::{private_dir, write_atomically};

/// Artifacts on disk under one folder, private to this process's user.
#[derive(Debug)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// Opens (creating when needed) the cache under `root`.
    pub fn open(root: &Path) -> Result<Self, String> {
        let dir = root.join("oci-v1");
        private_dir(&dir)?;
        Ok(ArtifactCache { dir })
    }

    /// The blob or manifest whose sha256 is `hex`, when stored intact.
    pub fn get(&self, hex: &str, limit: u64) -> Option<Vec<u8>> {
        let path = self.dir.join(format!("{hex}.blob"));
        let bytes = read_bounded(&path, limit).ok()?;
        if hex::encode(Sha256::digest(&bytes)) == hex {
            return Some(bytes);
        }
        tracing::warn!(path = %path.display(), "dropping a cached artifact that does not match its digest");
        let _ = fs::remove_file(&path);
        None
    }

    /// Stores `bytes` (whose sha256 the caller checked is `hex`).
    pub fn put(&self, hex: &str, bytes: &[u8]) {
        let path = self.dir.join(format!("{hex}.blob"));
        if path.exists() {
            return;
        }
        if let Err(e) = write_atomically(&path, bytes) {
            tracing::warn!(path = %path.display(), error = %e, "could not cache a pulled artifact");
        }
    }

    /// Notes that `tenant` pulled `reference` from its registry.
    pub fn mark_pulled(&self, tenant: &str, reference: &Reference) {
        let path = self.pull_mark(tenant, reference);
        if !path.exists() {
            if let Err(e) = write_atomically(&path, reference.to_string().as_bytes()) {
                tracing::warn!(path = %path.display(), error = %e, "could not note a pull");
            }
        }
    }

    /// Whether `tenant` pulled `reference` from its registry before.
    pub fn pulled(&self, tenant: &str, reference: &Reference) -> bool {
        self.pull_mark(tenant, reference).is_file()
    }

    fn pull_mark(&self, tenant: &str, reference: &Reference) -> PathBuf {
        // Hashed, so neither names nor references become path components.
        let key = Sha256::digest(format!("{tenant}\0{reference}"));
        self.dir.join(format!("{}.pulled", hex::encode(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_checked_and_pulls_are_per_tenant() {
        let root = std::env::temp_dir().join(format!("oci-cache-test-{}", std::process::id()));
        let cache = ArtifactCache::open(&root).unwrap();
        let bytes = b"component bytes".to_vec();
        let hex = hex::encode(Sha256::digest(&bytes));
        assert_eq!(cache.get(&hex, 1 << 20), None);
        cache.put(&hex, &bytes);
        assert_eq!(cache.get(&hex, 1 << 20), Some(bytes.clone()));
        assert_eq!(cache.get(&hex, 4), None, "over the limit is a miss");
        // A damaged entry is a miss, and is removed.
        fs::write(root.join("oci-v1").join(format!("{hex}.blob")), b"other").unwrap();
        assert_eq!(cache.get(&hex, 1 << 20), None);
        assert!(!root.join("oci-v1").join(format!("{hex}.blob")).exists());

        let r: Reference = format!("registry.example/p@sha256:{hex}").parse().unwrap();
        assert!(!cache.pulled("team-a", &r));
        cache.mark_pulled("team-a", &r);
        assert!(cache.pulled("team-a", &r));
        assert!(!cache.pulled("team-b", &r));
        fs::remove_dir_all(&root).unwrap();
    }
}
