//! Watching `file` policy sources. The folder of each file is watched, not
//! the file: a mounted ConfigMap is updated by the kubelet swapping a
//! `..data` symlink, and editors save by renaming over the file, and both
//! replace the file rather than write to it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::Stream;
use notify::{RecursiveMode, Watcher};

/// A watcher of the folders that hold policy files, counting changes.
pub struct FileWatch {
    changes: Arc<AtomicU64>,
    sender: tokio::sync::mpsc::UnboundedSender<()>,
    receiver: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<()>>>,
    inner: Mutex<Option<notify::RecommendedWatcher>>,
    watched: Mutex<HashSet<PathBuf>>,
}

impl FileWatch {
    /// A watcher that watches nothing yet.
    pub fn new() -> Self {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        FileWatch {
            changes: Arc::new(AtomicU64::new(0)),
            sender,
            receiver: Mutex::new(Some(receiver)),
            inner: Mutex::new(None),
            watched: Mutex::new(HashSet::new()),
        }
    }

    /// How many changes were seen so far.
    pub fn count(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// A stream with an item per change (to wake the controller); taken once.
    pub fn changes(&self) -> impl Stream<Item = ()> + Send + 'static {
        let receiver = self.receiver.lock().expect("file watch lock").take();
        futures::stream::unfold(receiver, |r| async move {
            let mut r = r?;
            r.recv().await.map(|()| ((), Some(r)))
        })
    }

    /// Starts watching the folder of `path` (once per folder). A folder
    /// that cannot be watched is logged; the file is still read every tick.
    pub fn watch(&self, path: &str) {
        let folder = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let mut watched = self.watched.lock().expect("file watch lock");
        if watched.contains(&folder) {
            return;
        }
        let mut inner = self.inner.lock().expect("file watch lock");
        if inner.is_none() {
            let changes = Arc::clone(&self.changes);
            let sender = self.sender.clone();
            match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    changes.fetch_add(1, Ordering::SeqCst);
                    let _ = sender.send(());
                }
            }) {
                Ok(w) => *inner = Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch policy files; they are re-read every tick");
                    return;
                }
            }
        }
        let watcher = inner.as_mut().expect("made above");
        match watcher.watch(&folder, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watched.insert(folder);
            }
            Err(e) => {
                tracing::warn!(folder = %folder.display(), error = %e, "cannot watch a policy folder; the file is re-read every tick")
            }
        }
    }
}
