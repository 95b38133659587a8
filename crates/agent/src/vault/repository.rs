//! A restic repository on the vault's disk, in restic's own layout (`config`, `keys/`,
//! `locks/`, `snapshots/`, `index/`, `data/<2 hex>/`), so that `restic -r <path>` opens it
//! without alveole. Writes are append-only: a file is written once, atomically (a temporary
//! file linked into place, which fails if the name exists), and its content must hash to its
//! name; only locks may be removed by a client.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::Digest;

/// The kinds of files of a restic repository (besides `config`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Data,
    Keys,
    Locks,
    Snapshots,
    Index,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Data,
        Kind::Keys,
        Kind::Locks,
        Kind::Snapshots,
        Kind::Index,
    ];

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.dir() == text)
    }

    pub fn dir(self) -> &'static str {
        match self {
            Kind::Data => "data",
            Kind::Keys => "keys",
            Kind::Locks => "locks",
            Kind::Snapshots => "snapshots",
            Kind::Index => "index",
        }
    }
}

/// Why a repository operation failed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("no such repository or file")]
    NotFound,
    #[error("{0} exists already: a vault never rewrites a file")]
    Exists(String),
    /// What the vault never allows a node (rewriting, removing).
    #[error("{0}")]
    Refused(&'static str),
    /// A request the protocol does not allow (a malformed name or range).
    #[error("{0}")]
    Malformed(&'static str),
    #[error("the file is larger than the vault takes, or was cut off")]
    TooLarge,
    #[error("the content does not hash to its name {0}")]
    WrongHash(String),
    #[error("the vault's disk: {0}")]
    Io(#[from] std::io::Error),
}

/// A file's name: 64 lowercase hex digits (its SHA-256), or `config`.
fn valid_name(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One repository: its directory.
#[derive(Clone, Debug)]
pub struct Repository {
    root: PathBuf,
}

impl Repository {
    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn exists(&self) -> bool {
        self.root.join("config").is_file() || self.root.join("keys").is_dir()
    }

    /// Whether the repository was made whole (its config written): one being made is not
    /// checked, nor pruned.
    pub fn initialised(&self) -> bool {
        self.root.join("config").is_file()
    }

    /// Makes the directories of a new repository (restic's `init` writes its config and key
    /// afterwards). Creating one that exists changes nothing.
    pub fn create(&self) -> Result<(), RepositoryError> {
        for kind in Kind::ALL {
            std::fs::create_dir_all(self.root.join(kind.dir()))?;
        }
        for prefix in 0..=255u8 {
            std::fs::create_dir_all(self.root.join("data").join(format!("{prefix:02x}")))?;
        }
        std::fs::create_dir_all(self.root.join("tmp"))?;
        Ok(())
    }

    /// Where a file lives, or why its name is refused.
    fn path(&self, kind: Option<Kind>, name: &str) -> Result<PathBuf, RepositoryError> {
        match kind {
            None if name == "config" => Ok(self.root.join("config")),
            None => Err(RepositoryError::NotFound),
            Some(_) if !valid_name(name) => Err(RepositoryError::Malformed(
                "a file's name is the 64 hex digits of its SHA-256",
            )),
            Some(Kind::Data) => Ok(self.root.join("data").join(&name[..2]).join(name)),
            Some(kind) => Ok(self.root.join(kind.dir()).join(name)),
        }
    }

    /// The files of `kind` and their sizes.
    pub fn list(&self, kind: Kind) -> Result<Vec<(String, u64)>, RepositoryError> {
        if !self.exists() {
            return Err(RepositoryError::NotFound);
        }
        let mut dirs = vec![self.root.join(kind.dir())];
        if kind == Kind::Data {
            dirs = std::fs::read_dir(&dirs[0])?
                .filter_map(Result::ok)
                .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
                .map(|entry| entry.path())
                .collect();
        }
        let mut files = Vec::new();
        for dir in dirs {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if valid_name(&name) {
                    files.push((name, entry.metadata()?.len()));
                }
            }
        }
        files.sort();
        Ok(files)
    }

    /// A file's size, if it exists.
    pub fn size(&self, kind: Option<Kind>, name: &str) -> Result<u64, RepositoryError> {
        match std::fs::metadata(self.path(kind, name)?) {
            Ok(meta) if meta.is_file() => Ok(meta.len()),
            Ok(_) => Err(RepositoryError::NotFound),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(RepositoryError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a named file's content still hashes to its name (its bytes as written),
    /// read in pieces.
    pub fn intact(&self, kind: Kind, name: &str) -> Result<bool, RepositoryError> {
        use std::io::Read;
        let mut file = match std::fs::File::open(self.path(Some(kind), name)?) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RepositoryError::NotFound);
            }
            Err(e) => return Err(e.into()),
        };
        let mut hasher = sha2::Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        Ok(hex(&hasher.finalize()) == name)
    }

    /// `length` bytes of a file from `offset` (to its end when `None`).
    pub fn read(
        &self,
        kind: Option<Kind>,
        name: &str,
        offset: u64,
        length: Option<u64>,
    ) -> Result<Vec<u8>, RepositoryError> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = match std::fs::File::open(self.path(kind, name)?) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RepositoryError::NotFound);
            }
            Err(e) => return Err(e.into()),
        };
        file.seek(SeekFrom::Start(offset))?;
        // Sized at once: a pack's range is megabytes, which growing by doubling copies twice.
        let size = file.metadata()?.len().saturating_sub(offset);
        let wanted = length.map_or(size, |length| length.min(size));
        let mut bytes = Vec::with_capacity(usize::try_from(wanted).unwrap_or(0));
        match length {
            Some(length) => {
                file.take(length).read_to_end(&mut bytes)?;
            }
            None => {
                file.read_to_end(&mut bytes)?;
            }
        }
        Ok(bytes)
    }

    /// Writes a new file once: to a temporary file, synced, then linked into place (which
    /// fails if the name exists, so that two writers cannot both win, and nothing written
    /// before is ever replaced). The content of a named file must hash to its name.
    pub fn write(
        &self,
        kind: Option<Kind>,
        name: &str,
        content: &[u8],
    ) -> Result<(), RepositoryError> {
        let target = self.path(kind, name)?;
        if !self.exists() && kind.is_some() {
            return Err(RepositoryError::NotFound);
        }
        let shown = |kind: Option<Kind>| match kind {
            Some(kind) => format!("{}/{name}", kind.dir()),
            None => name.to_owned(),
        };
        if target.exists() {
            return Err(RepositoryError::Exists(shown(kind)));
        }
        if kind.is_some() {
            let digest = hex(&sha2::Sha256::digest(content));
            if digest != name {
                return Err(RepositoryError::WrongHash(name.to_owned()));
            }
        }
        let tmp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_dir)?;
        let tmp = tmp_dir.join(format!("{name}.{}", uuid::Uuid::now_v7().simple()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .and_then(|mut file| {
                file.write_all(content)?;
                file.sync_all()
            })
            .and_then(|()| std::fs::hard_link(&tmp, &target));
        // The temporary name goes whatever happened; a linked file stays under its own.
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => {
                sync_dir(target.parent().unwrap_or(&self.root));
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(RepositoryError::Exists(shown(kind)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// When each file of `kind` reached the vault (its modification time, set when the vault
    /// linked it into place): retention goes by these, not by what a snapshot claims.
    pub fn arrivals(
        &self,
        kind: Kind,
    ) -> Result<Vec<(String, std::time::SystemTime)>, RepositoryError> {
        let mut arrived = Vec::new();
        for (name, _) in self.list(kind)? {
            let modified = std::fs::metadata(self.path(Some(kind), &name)?)?.modified()?;
            arrived.push((name, modified));
        }
        Ok(arrived)
    }

    /// Removes any file: the vault's own pruning only, never a client's request.
    pub(crate) fn remove(&self, kind: Kind, name: &str) -> Result<(), RepositoryError> {
        match std::fs::remove_file(self.path(Some(kind), name)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a lock (the only file a client may remove).
    pub fn remove_lock(&self, name: &str) -> Result<(), RepositoryError> {
        match std::fs::remove_file(self.path(Some(Kind::Locks), name)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(RepositoryError::NotFound),
            Err(e) => Err(e.into()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes a new directory entry durable (best effort: not every filesystem allows it).
fn sync_dir(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(content: &[u8]) -> String {
        hex(&sha2::Sha256::digest(content))
    }

    #[test]
    fn a_file_is_written_once_and_must_hash_to_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::at(dir.path().join("r"));
        let content = b"a snapshot";
        let name = named(content);
        assert!(matches!(
            repo.write(Some(Kind::Snapshots), &name, content),
            Err(RepositoryError::NotFound)
        ));
        repo.create().unwrap();
        repo.write(None, "config", b"sealed config").unwrap();
        assert!(matches!(
            repo.write(None, "config", b"another"),
            Err(RepositoryError::Exists(_))
        ));
        repo.write(Some(Kind::Snapshots), &name, content).unwrap();
        assert!(matches!(
            repo.write(Some(Kind::Snapshots), &name, content),
            Err(RepositoryError::Exists(_))
        ));
        assert!(matches!(
            repo.write(Some(Kind::Index), &name, b"other bytes"),
            Err(RepositoryError::WrongHash(_))
        ));
        assert!(matches!(
            repo.write(Some(Kind::Index), "../../etc/passwd", b"x"),
            Err(RepositoryError::Malformed(_))
        ));
        assert_eq!(
            repo.list(Kind::Snapshots).unwrap(),
            [(name.clone(), content.len() as u64)]
        );
        assert_eq!(
            repo.read(Some(Kind::Snapshots), &name, 2, Some(4)).unwrap(),
            b"snap"
        );
        // Nothing is left in the temporary directory.
        assert_eq!(
            std::fs::read_dir(dir.path().join("r/tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn data_files_live_under_their_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::at(dir.path().to_owned());
        repo.create().unwrap();
        let content = b"a pack";
        let name = named(content);
        repo.write(Some(Kind::Data), &name, content).unwrap();
        assert!(
            dir.path()
                .join("data")
                .join(&name[..2])
                .join(&name)
                .is_file()
        );
        assert_eq!(repo.list(Kind::Data).unwrap().len(), 1);
        assert_eq!(repo.size(Some(Kind::Data), &name).unwrap(), 6);
    }
}
