//! The agent's state directory behind a narrow trait: the real directory, where every write
//! replaces a file whole (a crash leaves the old content or the new, never half) with mode
//! 0600 since the files carry secrets; and an in-memory one for tests, which can be told to
//! fail.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// The files the agent keeps between its runs (its desired state, outbox, credential, ...).
pub trait StateFiles: Send + Sync + Debug {
    /// The file's bytes; `None` when there is no such file.
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>>;
    /// Replaces the file whole.
    fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Removes the file; an absent one is not an error.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Moves a file aside under another name (an unreadable one, kept for a person to see).
    fn set_aside(&self, name: &str, aside: &str) -> io::Result<()>;
    /// Where the file is, for messages.
    fn locate(&self, name: &str) -> PathBuf;
}

/// The state directory on disk.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl StateFiles for StateDir {
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.dir.join(name)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        write_atomically(&self.dir.join(name), bytes)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        match fs::remove_file(self.dir.join(name)) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn set_aside(&self, name: &str, aside: &str) -> io::Result<()> {
        fs::rename(self.dir.join(name), self.dir.join(aside))
    }

    fn locate(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never half of
/// one: a temporary file (mode 0600), fsync, rename, then fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    File::open(dir).and_then(|d| d.sync_all())
}

/// A state directory in memory (tests): what was written, and files told to fail.
#[derive(Debug, Default)]
pub struct MemoryFiles {
    files: Mutex<BTreeMap<String, Vec<u8>>>,
    failing: Mutex<BTreeSet<String>>,
}

impl MemoryFiles {
    /// Every read and write of `name` fails from now on (a full or broken disk).
    pub fn fail(&self, name: &str) {
        lock(&self.failing).insert(name.to_owned());
    }

    /// What `name` holds.
    pub fn contents(&self, name: &str) -> Option<Vec<u8>> {
        lock(&self.files).get(name).cloned()
    }

    fn check(&self, name: &str) -> io::Result<()> {
        if lock(&self.failing).contains(name) {
            return Err(io::Error::other(format!("{name}: told to fail")));
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StateFiles for MemoryFiles {
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        self.check(name)?;
        Ok(self.contents(name))
    }

    fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.check(name)?;
        lock(&self.files).insert(name.to_owned(), bytes.to_vec());
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.check(name)?;
        lock(&self.files).remove(name);
        Ok(())
    }

    fn set_aside(&self, name: &str, aside: &str) -> io::Result<()> {
        let mut files = lock(&self.files);
        let bytes = files
            .remove(name)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        files.insert(aside.to_owned(), bytes);
        Ok(())
    }

    fn locate(&self, name: &str) -> PathBuf {
        PathBuf::from("memory").join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let files = StateDir::new(&dir.path().join("state"));
        assert_eq!(files.read("a.json").unwrap(), None);
        files.write("a.json", b"one").unwrap();
        files.write("a.json", b"two").unwrap();
        assert_eq!(files.read("a.json").unwrap().as_deref(), Some(&b"two"[..]));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(files.locate("a.json")).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert!(!files.locate("a.json.tmp").exists(), "no temporary left");
        files.remove("a.json").unwrap();
        files.remove("a.json").unwrap();
        assert_eq!(files.read("a.json").unwrap(), None);
    }

    #[test]
    fn memory_files_fail_when_told() {
        let files = MemoryFiles::default();
        files.write("x", b"1").unwrap();
        files.fail("x");
        assert!(files.read("x").is_err() && files.write("x", b"2").is_err());
        assert_eq!(files.contents("x").as_deref(), Some(&b"1"[..]));
    }
}
