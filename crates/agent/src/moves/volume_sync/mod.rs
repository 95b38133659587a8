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
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use sha2::{Digest, Sha256};

#[cfg(test)]
mod tests;
mod tree;

pub use tree::{PartialFile, SourceFile, SourceTree, TreeWriter};

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
