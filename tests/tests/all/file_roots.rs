//! Path resolution of `file` sources, as a property: however a path mixes
//! `..`, `.`, symlinks inside and out of the root, absolute links, loops and
//! the kubelet's `..data` layout, what is read is a regular file inside the
//! root, and a plain path to such a file is never refused.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use wasm_autoscaler::boundary::files::{read_bounded, FileError, FileRoots};

/// A tree with an `allowed` folder (the root) and an `out` folder beside it.
struct Tree {
    base: PathBuf,
    root: PathBuf,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        use std::os::unix::fs::symlink;
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("file-roots-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (root, out) = (base.join("allowed"), base.join("out"));
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(root.join("..v1")).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(root.join("a/f.txt"), "inside-a").unwrap();
        std::fs::write(root.join("..v1/key"), "inside-v1").unwrap();
        symlink("..v1", root.join("..data")).unwrap();
        symlink("..data/key", root.join("key")).unwrap();
        symlink("a", root.join("in-link")).unwrap();
        symlink("../out", root.join("out-link")).unwrap();
        symlink(out.join("g.txt"), root.join("abs-out")).unwrap();
        symlink("/etc", root.join("etc")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        std::fs::write(out.join("g.txt"), "OUTSIDE").unwrap();
        symlink("../allowed/a", out.join("back")).unwrap();
        Tree { base, root }
    })
}

const PARTS: &[&str] = &[
    "allowed", "a", "f.txt", "..", ".", "..data", "..v1", "key", "in-link", "out-link", "abs-out",
    "out", "g.txt", "back", "loop", "etc", "hostname", "x", "",
];

fn path_from(start_in_root: bool, parts: &[usize]) -> String {
    let t = tree();
    let start = if start_in_root { &t.root } else { &t.base };
    let mut text = start.display().to_string();
    for i in parts {
        text.push('/');
        text.push_str(PARTS[*i]);
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn nothing_outside_the_root_is_ever_read(
        start_in_root in any::<bool>(),
        parts in prop::collection::vec(0..PARTS.len(), 0..7),
    ) {
        let t = tree();
        let roots = FileRoots::new([t.root.clone()]).unwrap();
        let path = path_from(start_in_root, &parts);
        let real_root = std::fs::canonicalize(&t.root).unwrap();
        match roots.read(None, &path, 1 << 20) {
            // Every file inside the root says so; nothing outside does.
            Ok(bytes) => prop_assert!(bytes.starts_with(b"inside"), "{path}: {bytes:?}"),
            Err(_) => {
                // Refusing is always safe; but a path that stays inside the root, whose
                // links stay inside too, to a regular file must not be refused.
                let lexical_inside = lexically_inside(Path::new(&path), &t.root);
                let target = std::fs::canonicalize(&path).ok();
                let fine = lexical_inside
                    && target.as_ref().is_some_and(|r| r.starts_with(&real_root) && r.is_file());
                prop_assert!(!fine, "{path} was refused though it is a file inside the root");
            }
        }
    }
}

/// Whether `path`, with `.` and `..` applied as text, is inside `root`.
fn lexically_inside(path: &Path, root: &Path) -> bool {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out.starts_with(root)
}

#[test]
fn the_kubelet_layout_reads_and_each_escape_is_named() {
    let t = tree();
    let roots = FileRoots::new([t.root.clone()]).unwrap();
    let root = t.root.display().to_string();
    assert_eq!(
        roots.read(None, &format!("{root}/key"), 100).unwrap(),
        b"inside-v1"
    );
    assert_eq!(
        roots
            .read(None, &format!("{root}/in-link/f.txt"), 100)
            .unwrap(),
        b"inside-a"
    );
    for path in [
        format!("{root}/out-link/g.txt"),
        format!("{root}/abs-out"),
        format!("{root}/../out/g.txt"),
        format!("{root}/etc/hostname"),
        "/etc/hostname".to_string(),
    ] {
        assert!(
            matches!(
                roots.read(None, &path, 100),
                Err(FileError::OutsideRoots { .. })
            ),
            "{path}"
        );
    }
    assert!(matches!(
        roots.read(None, &format!("{root}/a"), 100),
        Err(FileError::NotRegular {
            what: "a folder",
            ..
        })
    ));
    assert!(matches!(
        roots.read(None, &format!("{root}/a/f.txt"), 3),
        Err(FileError::TooLarge { .. })
    ));
    assert!(matches!(
        roots.read(None, &format!("{root}/loop"), 100),
        Err(FileError::Io { .. })
    ));
    assert!(matches!(
        roots.read(None, "a/f.txt", 100),
        Err(FileError::Relative(_))
    ));
    assert_eq!(
        roots.read(Some(&t.root), "a/f.txt", 100).unwrap(),
        b"inside-a",
        "relative to a base inside the root"
    );
}

#[test]
fn the_bounded_reader_refuses_devices_and_fifos_at_once() {
    let started = std::time::Instant::now();
    assert!(matches!(
        read_bounded(Path::new("/dev/zero"), 1 << 20),
        Err(FileError::NotRegular {
            what: "a device",
            ..
        })
    ));
    let fifo = tree().base.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // A plain open of a FIFO with no writer would block forever.
    assert!(matches!(
        read_bounded(&fifo, 1 << 20),
        Err(FileError::NotRegular { what: "a FIFO", .. })
    ));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}
