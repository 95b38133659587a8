//! Copying a site's volume tree to another, in passes that shrink the delta: the first pass
//! copies everything, the next ones only what changed since (the site keeps serving during
//! them), the last one runs with the site paused. The building block of a site's move.
//!
//! - **What changed** is told by metadata, as rsync does by default: a file whose size,
//!   modification time, mode or owner differ from the copy's is copied again. The copy gets
//!   the source's modification time only when the file did not change while it was read;
//!   otherwise it gets the epoch, so the next pass copies it again.
//! - **Resumable by construction.** A file is written under a temporary name beside its place
//!   and renamed into it only once complete, with its metadata: an interrupted pass leaves
//!   complete files and stray temporaries (removed by the next pass), and the next pass copies
//!   only what is missing or different.
//! - **Never outside the trees.** A volume belongs to a site, which may put symlinks in it or
//!   swap a file for one between two looks. Every path is opened from the tree's root with
//!   `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`: no symlink is followed, on either side;
//!   symlinks are copied as symlinks. Devices, sockets and pipes are not copied (counted).
//! - **Checked.** [`tree_digest`] hashes a tree (paths, kinds, modes, owners, contents,
//!   symlink targets, files' modification times): equal digests, equal trees.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use sha2::{Digest, Sha256};

/// The prefix of files being written; whatever bears it in a target is an interrupted copy.
const PARTIAL: &str = ".alveole-partial-";

/// One thing in a tree, without its contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    File {
        size: u64,
        modified: (i64, i64),
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink {
        target: PathBuf,
        uid: u32,
        gid: u32,
    },
}

/// A tree's entries by relative path; parents sort before their children.
pub type Manifest = BTreeMap<PathBuf, Entry>;

/// What a scan saw besides the entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    pub entries: Manifest,
    /// Devices, sockets, pipes: not copied.
    pub special: usize,
    /// Temporaries of an interrupted copy.
    pub partial: Vec<PathBuf>,
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub files: usize,
    pub bytes: u64,
    pub removed: usize,
    /// Files that changed while they were read (copied again by the next pass).
    pub unstable: usize,
    /// Devices, sockets and pipes of the source, not copied.
    pub special: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(rustix::io::Errno) -> SyncError + '_ {
    move |errno| SyncError::Io {
        path: path.to_owned(),
        error: errno.into(),
    }
}

fn std_io(path: &Path) -> impl FnOnce(std::io::Error) -> SyncError + '_ {
    move |error| SyncError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Opens `rel` under `root` without following any symlink and without leaving the tree.
fn open_beneath(root: &OwnedFd, rel: &Path, flags: OFlags) -> Result<OwnedFd, SyncError> {
    let rel_or_dot = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    rustix::fs::openat2(
        root,
        rel_or_dot,
        flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
    )
    .map_err(io(rel))
}

/// A directory of the tree, opened as [`open_beneath`] does.
fn open_dir_beneath(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, SyncError> {
    open_beneath(root, rel, OFlags::DIRECTORY | OFlags::RDONLY)
}

fn open_root(path: &Path) -> Result<OwnedFd, SyncError> {
    rustix::fs::open(
        path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io(path))
}

// `Stat`'s field types differ between architectures: conversions that are no-ops here are not
// everywhere.
#[allow(clippy::useless_conversion)]
fn entry_of(stat: &rustix::fs::Stat, target: Option<PathBuf>) -> Option<Entry> {
    let (uid, gid) = (stat.st_uid, stat.st_gid);
    let mode = stat.st_mode & 0o7777;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Some(Entry::File {
            size: u64::try_from(stat.st_size).unwrap_or(0),
            modified: (
                i64::try_from(stat.st_mtime).unwrap_or(0),
                i64::try_from(stat.st_mtime_nsec).unwrap_or(0),
            ),
            mode,
            uid,
            gid,
        }),
        FileType::Directory => Some(Entry::Dir { mode, uid, gid }),
        FileType::Symlink => Some(Entry::Symlink {
            target: target.unwrap_or_default(),
            uid,
            gid,
        }),
        _ => None,
    }
}

/// Every entry of the tree at `root` (the root itself excluded), never following a symlink.
pub fn scan(root: &Path) -> Result<Scan, SyncError> {
    let root_fd = open_root(root)?;
    let mut scan = Scan::default();
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        let dir_fd = open_dir_beneath(&root_fd, &dir)?;
        let listing = rustix::fs::Dir::read_from(&dir_fd).map_err(io(&dir))?;
        for item in listing {
            let item = item.map_err(io(&dir))?;
            let name = OsStr::from_bytes(item.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let rel = dir.join(name);
            let stat =
                rustix::fs::statat(&dir_fd, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io(&rel))?;
            if name.as_bytes().starts_with(PARTIAL.as_bytes()) {
                scan.partial.push(rel);
                continue;
            }
            let target = (FileType::from_raw_mode(stat.st_mode) == FileType::Symlink)
                .then(|| rustix::fs::readlinkat(&dir_fd, name, Vec::new()))
                .transpose()
                .map_err(io(&rel))?
                .map(|t| PathBuf::from(OsStr::from_bytes(t.to_bytes())));
            match entry_of(&stat, target) {
                Some(entry) => {
                    if matches!(entry, Entry::Dir { .. }) {
                        pending.push(rel.clone());
                    }
                    scan.entries.insert(rel, entry);
                }
                None => scan.special += 1,
            }
        }
    }
    Ok(scan)
}

/// What a pass must do to make the target's entries the source's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Deepest first.
    pub remove: Vec<PathBuf>,
    /// Parents first.
    pub dirs: Vec<PathBuf>,
    pub symlinks: Vec<PathBuf>,
    pub files: Vec<PathBuf>,
}

/// The delta from `target` to `source` (pure).
pub fn plan(source: &Manifest, target: &Manifest) -> Delta {
    let mut delta = Delta::default();
    for (path, theirs) in target.iter().rev() {
        let kept = match (source.get(path), theirs) {
            (Some(Entry::Dir { .. }), Entry::Dir { .. }) => true,
            (Some(Entry::File { .. }), Entry::File { .. }) => true,
            (Some(Entry::Symlink { target: a, .. }), Entry::Symlink { target: b, .. }) => a == b,
            _ => false,
        };
        if !kept {
            delta.remove.push(path.clone());
        }
    }
    for (path, ours) in source {
        let same = target.get(path) == Some(ours);
        match ours {
            Entry::Dir { .. } if !same => delta.dirs.push(path.clone()),
            Entry::Symlink { .. } if !same => delta.symlinks.push(path.clone()),
            Entry::File { .. } if !same => delta.files.push(path.clone()),
            _ => {}
        }
    }
    delta
}

/// The parent's path and the file name of `rel`.
fn split(rel: &Path) -> (&Path, &OsStr) {
    (
        rel.parent().unwrap_or(Path::new("")),
        rel.file_name().unwrap_or(rel.as_os_str()),
    )
}

fn owner(uid: u32, gid: u32) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
    (
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
}

/// One pass: makes the tree at `target` match the tree at `source` as they are now.
pub fn sync_pass(source: &Path, target: &Path) -> Result<PassReport, SyncError> {
    let (source_scan, target_scan) = (scan(source)?, scan(target)?);
    let delta = plan(&source_scan.entries, &target_scan.entries);
    let source_tree = SourceTree::open(source)?;
    let writer = TreeWriter::open(target)?;
    let mut report = PassReport {
        special: source_scan.special,
        ..PassReport::default()
    };
    for path in &target_scan.partial {
        writer.remove(path, false)?;
        report.removed += 1;
    }
    for path in &delta.remove {
        let is_dir = matches!(target_scan.entries.get(path), Some(Entry::Dir { .. }));
        writer.remove(path, is_dir)?;
        report.removed += 1;
    }
    for path in delta.dirs.iter().chain(&delta.symlinks) {
        if let Some(entry) = source_scan.entries.get(path) {
            writer.put(path, entry)?;
        }
    }
    for path in &delta.files {
        let Some(entry) = source_scan.entries.get(path) else {
            continue;
        };
        let Some(mut reading) = source_tree.read(path, entry)? else {
            continue;
        };
        let mut partial = writer.begin_file(path)?;
        let copied = std::io::copy(reading.file(), partial.file()).map_err(std_io(path))?;
        let stable = reading.stable()?;
        partial.finish(entry, stable)?;
        report.files += 1;
        report.bytes += copied;
        report.unstable += usize::from(!stable);
    }
    Ok(report)
}

/// The tree a pass copies from; files are opened beneath its root.
#[derive(Debug)]
pub struct SourceTree {
    root: OwnedFd,
}

/// A source file being read, and what the scan saw of it.
#[derive(Debug)]
pub struct SourceFile {
    file: std::fs::File,
    path: PathBuf,
    size: u64,
    modified: (i64, i64),
    before: rustix::fs::Stat,
}

impl SourceTree {
    pub fn open(root: &Path) -> Result<Self, SyncError> {
        Ok(Self {
            root: open_root(root)?,
        })
    }

    /// Opens the file the scan saw as `entry`; `None` when it is no longer a regular file
    /// (gone or swapped since the scan: the next pass sees).
    pub fn read(&self, path: &Path, entry: &Entry) -> Result<Option<SourceFile>, SyncError> {
        let Entry::File { size, modified, .. } = *entry else {
            return Ok(None);
        };
        let Ok(fd) = open_beneath(&self.root, path, OFlags::RDONLY) else {
            return Ok(None);
        };
        let before = rustix::fs::fstat(&fd).map_err(io(path))?;
        if FileType::from_raw_mode(before.st_mode) != FileType::RegularFile {
            return Ok(None);
        }
        Ok(Some(SourceFile {
            file: std::fs::File::from(fd),
            path: path.to_owned(),
            size,
            modified,
            before,
        }))
    }
}

impl SourceFile {
    pub fn file(&mut self) -> &mut std::fs::File {
        &mut self.file
    }

    /// Whether the file was as scanned before and after it was read (same size and
    /// modification time): otherwise its copy must be made again by the next pass.
    pub fn stable(&self) -> Result<bool, SyncError> {
        let as_scanned = |stat: &rustix::fs::Stat| {
            matches!(entry_of(stat, None), Some(Entry::File { size, modified, .. })
                if size == self.size && modified == self.modified)
        };
        let after = rustix::fs::fstat(&self.file).map_err(io(&self.path))?;
        Ok(as_scanned(&self.before) && as_scanned(&after))
    }
}

/// Writes into the tree a pass copies to. Every path is opened beneath its root, and files
/// are written under a temporary name, then renamed into place with their metadata.
#[derive(Debug)]
pub struct TreeWriter {
    root: OwnedFd,
}

/// A file being written under its temporary name.
#[derive(Debug)]
pub struct PartialFile {
    parent: OwnedFd,
    temporary: std::ffi::OsString,
    name: std::ffi::OsString,
    path: PathBuf,
    file: std::fs::File,
}

impl TreeWriter {
    pub fn open(root: &Path) -> Result<Self, SyncError> {
        Ok(Self {
            root: open_root(root)?,
        })
    }

    /// Removes a file, a symlink or an (empty) directory; one already gone is fine.
    pub fn remove(&self, path: &Path, is_dir: bool) -> Result<(), SyncError> {
        let (parent, name) = split(path);
        let parent_fd = open_dir_beneath(&self.root, parent)?;
        let flags = if is_dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        match rustix::fs::unlinkat(&parent_fd, name, flags) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(errno) => Err(io(path)(errno)),
        }
    }

    /// Makes a directory or a symlink as `entry` says (files go through `begin_file`).
    pub fn put(&self, path: &Path, entry: &Entry) -> Result<(), SyncError> {
        let (parent, name) = split(path);
        let parent_fd = open_dir_beneath(&self.root, parent)?;
        match entry {
            Entry::Dir { mode, uid, gid } => {
                match rustix::fs::mkdirat(&parent_fd, name, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(errno) => return Err(io(path)(errno)),
                }
                let dir_fd = open_dir_beneath(&self.root, path)?;
                let (user, group) = owner(*uid, *gid);
                rustix::fs::fchown(&dir_fd, user, group).map_err(io(path))?;
                rustix::fs::fchmod(&dir_fd, Mode::from_raw_mode(*mode)).map_err(io(path))?;
            }
            Entry::Symlink { target, uid, gid } => {
                match rustix::fs::unlinkat(&parent_fd, name, AtFlags::empty()) {
                    Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                    Err(errno) => return Err(io(path)(errno)),
                }
                rustix::fs::symlinkat(target.as_path(), &parent_fd, name).map_err(io(path))?;
                let (user, group) = owner(*uid, *gid);
                rustix::fs::chownat(&parent_fd, name, user, group, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io(path))?;
            }
            Entry::File { .. } => {}
        }
        Ok(())
    }

    /// Starts writing `path` under its temporary name (a stale temporary is replaced).
    pub fn begin_file(&self, path: &Path) -> Result<PartialFile, SyncError> {
        let (parent, name) = split(path);
        let parent_fd = open_dir_beneath(&self.root, parent)?;
        let mut temporary = OsStr::new(PARTIAL).to_os_string();
        temporary.push(name);
        match rustix::fs::unlinkat(&parent_fd, temporary.as_os_str(), AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(errno) => return Err(io(path)(errno)),
        }
        let written = rustix::fs::openat(
            &parent_fd,
            temporary.as_os_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io(path))?;
        Ok(PartialFile {
            parent: parent_fd,
            temporary,
            name: name.to_os_string(),
            path: path.to_owned(),
            file: std::fs::File::from(written),
        })
    }
}

impl PartialFile {
    pub fn file(&mut self) -> &mut std::fs::File {
        &mut self.file
    }

    /// Gives the file `entry`'s owner, mode and modification time (the epoch when the source
    /// changed while it was read, so the next pass copies it again), then renames it into
    /// place.
    pub fn finish(self, entry: &Entry, stable: bool) -> Result<(), SyncError> {
        let Entry::File {
            modified,
            mode,
            uid,
            gid,
            ..
        } = *entry
        else {
            return Ok(());
        };
        let path = &self.path;
        let (user, group) = owner(uid, gid);
        rustix::fs::fchown(&self.file, user, group).map_err(io(path))?;
        rustix::fs::fchmod(&self.file, Mode::from_raw_mode(mode)).map_err(io(path))?;
        let (seconds, nanoseconds) = if stable { modified } else { (0, 0) };
        let time = Timespec {
            tv_sec: seconds,
            tv_nsec: nanoseconds,
        };
        rustix::fs::futimens(
            &self.file,
            &Timestamps {
                last_access: time,
                last_modification: time,
            },
        )
        .map_err(io(path))?;
        rustix::fs::renameat(
            &self.parent,
            self.temporary.as_os_str(),
            &self.parent,
            self.name.as_os_str(),
        )
        .map_err(io(path))?;
        Ok(())
    }

    /// Gives up the file: its temporary goes.
    pub fn discard(self) {
        let _ = rustix::fs::unlinkat(&self.parent, self.temporary.as_os_str(), AtFlags::empty());
    }
}

/// A SHA-256 of the whole tree: each entry's path, kind, mode, owner, and a file's contents
/// and modification time or a symlink's target, in path order.
pub fn tree_digest(root: &Path) -> Result<String, SyncError> {
    let scanned = scan(root)?;
    let root_fd = open_root(root)?;
    let mut digest = Sha256::new();
    for (path, entry) in &scanned.entries {
        digest.update(path.as_os_str().as_bytes());
        digest.update([0]);
        match entry {
            Entry::File {
                size,
                modified,
                mode,
                uid,
                gid,
            } => {
                digest.update(format!("file {size} {modified:?} {mode:o} {uid} {gid}\0"));
                let mut file = std::fs::File::from(open_beneath(&root_fd, path, OFlags::RDONLY)?);
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let n = file.read(&mut buffer).map_err(std_io(path))?;
                    if n == 0 {
                        break;
                    }
                    digest.update(&buffer[..n]);
                }
            }
            Entry::Dir { mode, uid, gid } => {
                digest.update(format!("dir {mode:o} {uid} {gid}\0"));
            }
            Entry::Symlink { target, uid, gid } => {
                digest.update(format!("symlink {uid} {gid} "));
                digest.update(target.as_os_str().as_bytes());
            }
        }
        digest.update([0]);
    }
    Ok(format!("{:x}", digest.finalize()))
}

#[cfg(test)]
mod tests {
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
            std::fs::set_permissions(root.join("d1"), std::fs::Permissions::from_mode(0o710))
                .unwrap();
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
}
