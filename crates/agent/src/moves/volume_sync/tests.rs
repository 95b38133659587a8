//! Volume copies on real trees: passes, interruptions, hostile symlinks, digests.

use super::*;

fn file(size: u64, second: i64) -> Entry {
    Entry::File {
        size,
        modified: (second, 0),
        mode: 0o644,
        uid: 0,
        gid: 0,
    }
}

fn dir() -> Entry {
    Entry::Dir {
        mode: 0o755,
        uid: 0,
        gid: 0,
    }
}

#[test]
fn the_delta_copies_what_differs_and_removes_what_went_deepest_first() {
    let source: Manifest = [
        ("a", dir()),
        ("a/same", file(3, 1)),
        ("a/grown", file(9, 1)),
        ("a/touched", file(3, 2)),
        ("new", file(1, 1)),
        ("was-a-dir", file(1, 1)),
    ]
    .into_iter()
    .map(|(p, e)| (PathBuf::from(p), e))
    .collect();
    let target: Manifest = [
        ("a", dir()),
        ("a/same", file(3, 1)),
        ("a/grown", file(3, 1)),
        ("a/touched", file(3, 1)),
        ("gone", dir()),
        ("gone/inside", file(1, 1)),
        ("was-a-dir", dir()),
    ]
    .into_iter()
    .map(|(p, e)| (PathBuf::from(p), e))
    .collect();
    let delta = plan(&source, &target);
    let paths = |v: &[PathBuf]| {
        v.iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(paths(&delta.remove), ["was-a-dir", "gone/inside", "gone"]);
    assert_eq!(
        paths(&delta.files),
        ["a/grown", "a/touched", "new", "was-a-dir"]
    );
    assert!(delta.dirs.is_empty() && delta.symlinks.is_empty());
    assert_eq!(plan(&source, &source), Delta::default(), "nothing to do");
}

/// Trees on disk, as root sees them (the agent runs as root): owners are copied only
/// when the test can set them.
mod on_disk {
    use super::super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    fn write(root: &Path, rel: &str, bytes: &[u8]) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// Whether owners can be set (the agent runs as root). Under CI the tests must run
    /// as root; elsewhere the owner checks are skipped, loudly.
    fn is_root(dir: &Path) -> bool {
        let root = std::fs::metadata(dir).unwrap().uid() == 0;
        if !root {
            assert!(
                std::env::var_os("CI").is_none(),
                "the volume copy tests run as root under CI (owners are copied)"
            );
            eprintln!("SKIPPED: copying owners is not tested (not running as root)");
        }
        root
    }

    /// A site's volume: nested directories, files of many sizes and modes, symlinks that
    /// point out of the tree, a file owned by www-data.
    fn volume(root: &Path) -> u64 {
        let mut total = 0;
        for i in 0..120u32 {
            let size = (i as usize * 997) % 20_000;
            let bytes: Vec<u8> = (0..size).map(|b| (b as u32 * 31 + i) as u8).collect();
            write(root, &format!("d{}/sub{}/f{i}.txt", i % 4, i % 3), &bytes);
            total += size as u64;
        }
        let big = vec![7u8; 1 << 20];
        write(root, "uploads/big.bin", &big);
        total += big.len() as u64;
        write(root, "empty", b"");
        let script = root.join("d0/run.sh");
        std::fs::write(&script, b"#!/bin/sh\n").unwrap();
        total += 10;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::set_permissions(root.join("d1"), std::fs::Permissions::from_mode(0o710)).unwrap();
        symlink("../../etc/passwd", root.join("escape")).unwrap();
        symlink("/etc", root.join("d2/etc")).unwrap();
        if is_root(root) {
            std::os::unix::fs::chown(root.join("empty"), Some(33), Some(33)).unwrap();
        }
        total
    }

    #[test]
    fn a_volume_is_copied_whole_then_only_its_changes_and_the_trees_match() {
        let (source, target) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (source, target) = (source.path(), target.path());
        let total = volume(source);

        let first = sync_pass(source, target).unwrap();
        assert_eq!((first.files, first.bytes, first.unstable), (123, total, 0));
        assert_eq!(tree_digest(source).unwrap(), tree_digest(target).unwrap());
        // Symlinks are copied as symlinks, never followed.
        let escape = std::fs::symlink_metadata(target.join("escape")).unwrap();
        assert!(escape.file_type().is_symlink());
        assert_eq!(
            std::fs::read_link(target.join("d2/etc")).unwrap(),
            PathBuf::from("/etc")
        );
        let under_link = |p: &PathBuf| p.starts_with("d2/etc") && p != Path::new("d2/etc");
        assert!(!scan(source).unwrap().entries.keys().any(under_link));
        if is_root(source) {
            assert_eq!(std::fs::metadata(target.join("empty")).unwrap().uid(), 33);
        }
        assert_eq!(
            std::fs::metadata(target.join("d1"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o710
        );

        // The site wrote while it kept serving: appended, deleted, added, changed a mode,
        // replaced a file by a directory.
        for i in [2, 50, 97] {
            let path = source.join(format!("d{}/sub{}/f{i}.txt", i % 4, i % 3));
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.extend_from_slice(b"appended");
            std::fs::write(&path, bytes).unwrap();
        }
        std::fs::remove_file(source.join("d0/sub0/f0.txt")).unwrap();
        std::fs::remove_dir_all(source.join("d3")).unwrap();
        write(source, "uploads/new.png", b"png");
        std::fs::set_permissions(source.join("empty"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::remove_file(source.join("d1/sub1/f1.txt")).unwrap();
        write(source, "d1/sub1/f1.txt/inside", b"now a directory");

        let second = sync_pass(source, target).unwrap();
        assert_eq!(second.files, 3 + 1 + 1 + 1, "{second:?}");
        assert!(second.bytes < total / 10, "{second:?}");
        assert!(second.removed > 30, "d3 and what it held: {second:?}");
        assert_eq!(tree_digest(source).unwrap(), tree_digest(target).unwrap());

        let third = sync_pass(source, target).unwrap();
        assert_eq!((third.files, third.bytes, third.removed), (0, 0, 0));
    }

    #[test]
    fn an_interrupted_pass_resumes_with_what_is_missing_and_drops_its_temporaries() {
        let (source, target) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (source, target) = (source.path(), target.path());
        let total = volume(source);
        sync_pass(source, target).unwrap();
        // As a crash mid-pass leaves it: some files not there yet, a temporary half written.
        std::fs::remove_dir_all(target.join("d0")).unwrap();
        std::fs::remove_file(target.join("uploads/big.bin")).unwrap();
        write(target, "uploads/.alveole-partial-big.bin", &[7u8; 1000]);

        let resumed = sync_pass(source, target).unwrap();
        assert!(resumed.files > 0 && resumed.bytes < total, "{resumed:?}");
        assert_eq!(resumed.removed, 1, "the temporary: {resumed:?}");
        assert_eq!(tree_digest(source).unwrap(), tree_digest(target).unwrap());
        assert!(!target.join("uploads/.alveole-partial-big.bin").exists());
    }

    #[test]
    fn a_symlink_planted_in_the_target_is_replaced_not_written_through() {
        let (source, target, outside) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        write(source.path(), "a/file", b"site data");
        symlink(outside.path(), target.path().join("a")).unwrap();
        sync_pass(source.path(), target.path()).unwrap();
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        assert!(
            std::fs::symlink_metadata(target.path().join("a"))
                .unwrap()
                .is_dir()
        );
        assert_eq!(
            tree_digest(source.path()).unwrap(),
            tree_digest(target.path()).unwrap()
        );
    }

    #[test]
    fn a_file_that_changed_since_the_scan_is_copied_again_by_the_next_pass() {
        let (source, target) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (source, target) = (source.path(), target.path());
        write(source, "log.txt", b"1\n");
        let scanned = scan(source).unwrap();
        let entry = &scanned.entries[Path::new("log.txt")];
        // The site appends between the scan and the copy.
        write(source, "log.txt", b"1\n2\n");
        let path = Path::new("log.txt");
        let mut reading = SourceTree::open(source)
            .unwrap()
            .read(path, entry)
            .unwrap()
            .unwrap();
        let mut partial = TreeWriter::open(target).unwrap().begin_file(path).unwrap();
        std::io::copy(reading.file(), partial.file()).unwrap();
        let stable = reading.stable().unwrap();
        assert!(!stable);
        partial.finish(entry, stable).unwrap();
        let kept = std::fs::metadata(target.join("log.txt"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(kept, std::time::UNIX_EPOCH, "marked to be copied again");
        let next = sync_pass(source, target).unwrap();
        assert_eq!((next.files, next.unstable), (1, 0));
        assert_eq!(tree_digest(source).unwrap(), tree_digest(target).unwrap());
    }

    #[test]
    fn the_digest_tells_trees_apart() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        volume(one.path());
        sync_pass(one.path(), two.path()).unwrap();
        assert_eq!(
            tree_digest(one.path()).unwrap(),
            tree_digest(two.path()).unwrap()
        );
        let path = two.path().join("uploads/big.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[12345] ^= 1;
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, bytes).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        assert_ne!(
            tree_digest(one.path()).unwrap(),
            tree_digest(two.path()).unwrap(),
            "one bit of content differs, metadata the same"
        );
    }
}
