//! Files a spec names: resolved only inside folders the operator's admin
//! allowed (`--allow-file-root`), opened without being led out of them by a
//! symlink, and read with a size bound.
//!
//! A path is checked twice: lexically, before the file system is touched
//! (so a tenant cannot even learn whether a path outside the roots exists),
//! and again after every symlink is resolved — the kubelet's `..data` links
//! inside a root are fine, a link that leaves it is refused. The file is
//! then opened without following a final symlink and without blocking (a
//! FIFO would block a plain open forever), its type and size are read from
//! the open descriptor, and on Linux the descriptor's real path is checked
//! once more, so swapping a folder for a symlink between the check and the
//! open gains nothing.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Where Kubernetes mounts a pod's ServiceAccount and projected tokens (and
/// `/run` is usually the same folder): no allowed folder may hold them.
const CREDENTIAL_FOLDERS: &[&str] = &["/var/run/secrets", "/run/secrets"];

/// Why a file was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The admin allowed no folder.
    #[error(
        "file sources are disabled: the operator's admin allowed no folder (--allow-file-root)"
    )]
    NoRoots,
    /// Only absolute paths are meaningful in the operator.
    #[error("`{0}` is not an absolute path")]
    Relative(String),
    /// The path, or where its symlinks lead, is outside every allowed folder.
    #[error("`{path}` is outside the folders files may be read from ({roots})")]
    OutsideRoots { path: String, roots: String },
    /// A directory, device, FIFO or socket.
    #[error("`{path}` is {what}, not a regular file")]
    NotRegular { path: String, what: &'static str },
    /// An allowed folder would hold the operator's own credentials.
    #[error("`{0}` overlaps /var/run/secrets, where the operator's ServiceAccount credentials are; allow a folder of policies only")]
    HoldsCredentials(String),
    /// Larger than the limit.
    #[error("`{path}` is larger than the {limit}-byte limit")]
    TooLarge { path: String, limit: u64 },
    /// Missing, unreadable, or otherwise failed.
    #[error("cannot read `{path}`: {message}")]
    Io { path: String, message: String },
}

impl FileError {
    /// A stable label for metrics and condition reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            FileError::NoRoots => "file_sources_disabled",
            FileError::Relative(_) => "file_path_relative",
            FileError::OutsideRoots { .. } => "file_outside_roots",
            FileError::NotRegular { .. } => "file_not_regular",
            FileError::HoldsCredentials(_) => "file_root_holds_credentials",
            FileError::TooLarge { .. } => "file_too_large",
            FileError::Io { .. } => "file_unreadable",
        }
    }
}

/// One allowed folder, as the admin wrote it and with its symlinks resolved.
#[derive(Debug, Clone)]
struct Root {
    given: PathBuf,
    real: PathBuf,
}

/// The folders files may be read from. Empty: no file may be read.
#[derive(Debug, Clone, Default)]
pub struct FileRoots {
    roots: Vec<Root>,
}

impl FileRoots {
    /// Roots from folders that must exist now.
    pub fn new(dirs: impl IntoIterator<Item = PathBuf>) -> Result<Self, FileError> {
        let mut roots = Vec::new();
        for dir in dirs {
            let shown = dir.display().to_string();
            let given = if dir.is_absolute() {
                normalize(&dir)
            } else {
                let cwd = std::env::current_dir().map_err(|e| io(&shown, &e))?;
                normalize(&cwd.join(&dir))
            };
            let real = std::fs::canonicalize(&given).map_err(|e| io(&shown, &e))?;
            if !real.is_dir() {
                return Err(FileError::NotRegular {
                    path: shown,
                    what: "not a folder",
                });
            }
            // Neither above nor inside them: projected tokens of other
            // audiences live beside the ServiceAccount's.
            let overlaps = |c: &Path, root: &Path| c.starts_with(root) || root.starts_with(c);
            let holds_credentials = CREDENTIAL_FOLDERS.iter().any(|c| {
                let c = Path::new(c);
                overlaps(c, &given)
                    || std::fs::canonicalize(c).is_ok_and(|real_c| overlaps(&real_c, &real))
            });
            if holds_credentials {
                return Err(FileError::HoldsCredentials(shown));
            }
            roots.push(Root { given, real });
        }
        Ok(FileRoots { roots })
    }

    /// The allowed folders, as given.
    pub fn folders(&self) -> impl Iterator<Item = &Path> {
        self.roots.iter().map(|r| r.given.as_path())
    }

    /// Where `path` really is, when it is inside a root. A relative path is
    /// taken relative to `base`, and refused without one.
    pub fn resolve(&self, base: Option<&Path>, path: &str) -> Result<PathBuf, FileError> {
        if self.roots.is_empty() {
            return Err(FileError::NoRoots);
        }
        let joined = match (Path::new(path).is_absolute(), base) {
            (true, _) => PathBuf::from(path),
            (false, Some(base)) => base.join(path),
            (false, None) => return Err(FileError::Relative(path.into())),
        };
        let lexical = normalize(&joined);
        let inside_given = |p: &Path| self.roots.iter().any(|r| p.starts_with(&r.given));
        let inside_real = |p: &Path| self.roots.iter().any(|r| p.starts_with(&r.real));
        if !(inside_given(&lexical) || inside_real(&lexical)) {
            return Err(self.outside(path));
        }
        let real = std::fs::canonicalize(&lexical).map_err(|e| io(path, &e))?;
        if !inside_real(&real) {
            return Err(self.outside(path));
        }
        Ok(real)
    }

    /// A text that changes whenever the file `path` resolves to does (its
    /// device, inode, size and modification time), read without opening it.
    pub fn identity(&self, base: Option<&Path>, path: &str) -> Result<String, FileError> {
        use std::os::unix::fs::MetadataExt;
        let real = self.resolve(base, path)?;
        let meta = std::fs::metadata(&real).map_err(|e| io(path, &e))?;
        Ok(format!(
            "file:{}:{}:{}:{}.{}",
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec()
        ))
    }

    /// The bytes of `path` (see [`FileRoots::resolve`]), at most `limit` of them.
    pub fn read(&self, base: Option<&Path>, path: &str, limit: u64) -> Result<Vec<u8>, FileError> {
        let real = self.resolve(base, path)?;
        let file = open(&real, path)?;
        if let Some(opened) = opened_path(&file) {
            if !self.roots.iter().any(|r| opened.starts_with(&r.real)) {
                return Err(self.outside(path));
            }
        }
        read_open(file, path, limit)
    }

    fn outside(&self, path: &str) -> FileError {
        FileError::OutsideRoots {
            path: path.into(),
            roots: self
                .roots
                .iter()
                .map(|r| r.given.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// The bytes of a regular file the caller trusts the name of (a path on the
/// command line), at most `limit` of them: devices, FIFOs and folders are
/// refused instead of read forever.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let shown = path.display().to_string();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| io(&shown, &e))?;
    read_open(file, &shown, limit)
}

/// Opens `real` (symlink-free) for reading, neither following a final symlink
/// that appeared since nor blocking on a FIFO.
fn open(real: &Path, shown: &str) -> Result<File, FileError> {
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(real)
        .map_err(|e| io(shown, &e))
}

/// The path the kernel has for an open file (Linux); `None` elsewhere.
fn opened_path(file: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

fn read_open(file: File, shown: &str, limit: u64) -> Result<Vec<u8>, FileError> {
    let meta = file.metadata().map_err(|e| io(shown, &e))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a folder"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "something else"
        };
        return Err(FileError::NotRegular {
            path: shown.into(),
            what,
        });
    }
    let too_large = || FileError::TooLarge {
        path: shown.into(),
        limit,
    };
    if meta.len() > limit {
        return Err(too_large());
    }
    // The size can change after the check (and files in /proc report 0):
    // one byte past the limit tells "too large" from "exactly at it".
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io(shown, &e))?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// `path` with `.` and `..` removed without touching the file system (`..`
/// at the root stays at the root, as the kernel does).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Prefix(p) => out.push(p.as_os_str()),
            Component::RootDir => out.push("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
        }
    }
    out
}

fn io(path: &str, e: &std::io::Error) -> FileError {
    let message = match e.raw_os_error() {
        // ELOOP from O_NOFOLLOW: a symlink appeared where none was resolved.
        Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => {
            "the path changed into a symlink while it was opened".to_string()
        }
        _ => e.kind().to_string(),
    };
    FileError::Io {
        path: path.into(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizing_never_climbs_above_the_root() {
        assert_eq!(normalize(Path::new("/a/b/../c/./d")), Path::new("/a/c/d"));
        assert_eq!(normalize(Path::new("/../../etc")), Path::new("/etc"));
        assert_eq!(normalize(Path::new("/a/..")), Path::new("/"));
    }

    #[test]
    fn a_root_holding_the_service_account_token_is_refused() {
        for root in ["/", "/var", "/var/run", "/run", "/run/secrets"] {
            if Path::new(root).exists() {
                assert!(
                    matches!(
                        FileRoots::new([PathBuf::from(root)]),
                        Err(FileError::HoldsCredentials(_))
                    ),
                    "{root}"
                );
            }
        }
    }

    #[test]
    fn without_roots_nothing_resolves() {
        let roots = FileRoots::default();
        assert_eq!(
            roots.resolve(None, "/etc/hostname"),
            Err(FileError::NoRoots)
        );
    }
}
