//! Both ends of a copy, file by file: the source tree read beneath its root, and the target
//! tree written through temporaries renamed into place once complete.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use super::{
    Entry, PARTIAL, SyncError, entry_of, io, open_beneath, open_dir_beneath, open_root, owner,
    split,
};

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
