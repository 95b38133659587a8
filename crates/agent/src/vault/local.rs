//! A vault's repository on its own disk as a rustic_core backend, for the vault's pruning:
//! reads and appends as the REST protocol does, and removes files (which no node can ask
//! for).

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

use super::repository::{Kind, Repository, RepositoryError};

#[derive(Clone, Debug)]
pub struct LocalBackend {
    repository: Repository,
    location: String,
}

impl LocalBackend {
    pub fn new(repository: Repository, location: String) -> Self {
        Self {
            repository,
            location,
        }
    }
}

fn kind_of(kind: FileType) -> Option<Kind> {
    match kind {
        FileType::Config => None,
        FileType::Index => Some(Kind::Index),
        FileType::Key => Some(Kind::Keys),
        FileType::Snapshot => Some(Kind::Snapshots),
        FileType::Pack => Some(Kind::Data),
    }
}

fn name_of(kind: FileType, id: &Id) -> String {
    match kind {
        FileType::Config => "config".to_owned(),
        _ => id.to_hex().as_str().to_owned(),
    }
}

fn failed(what: &str, error: RepositoryError) -> Box<RusticError> {
    RusticError::new(
        ErrorKind::Backend,
        format!("the vault's disk: {what}: {error}"),
    )
}

impl ReadBackend for LocalBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn list_with_size(&self, kind: FileType) -> RusticResult<Vec<(Id, u32)>> {
        let Some(kind) = kind_of(kind) else {
            return Ok(match self.repository.size(None, "config") {
                Ok(size) => vec![(Id::default(), u32::try_from(size).unwrap_or(u32::MAX))],
                Err(_) => vec![],
            });
        };
        self.repository
            .list(kind)
            .map_err(|e| failed("listing", e))?
            .into_iter()
            .map(|(name, size)| {
                let id = name.parse::<Id>().map_err(|e| {
                    RusticError::new(ErrorKind::Backend, format!("the vault's disk: {name}: {e}"))
                })?;
                Ok((id, u32::try_from(size).unwrap_or(u32::MAX)))
            })
            .collect()
    }

    fn read_full(&self, kind: FileType, id: &Id) -> RusticResult<Bytes> {
        self.repository
            .read(kind_of(kind), &name_of(kind, id), 0, None)
            .map(Bytes::from)
            .map_err(|e| failed("reading", e))
    }

    fn read_partial(
        &self,
        kind: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        self.repository
            .read(
                kind_of(kind),
                &name_of(kind, id),
                u64::from(offset),
                Some(u64::from(length)),
            )
            .map(Bytes::from)
            .map_err(|e| failed("reading", e))
    }

    fn warmup_path(&self, kind: FileType, id: &Id) -> String {
        format!("{}/{}", self.location, name_of(kind, id))
    }
}

impl WriteBackend for LocalBackend {
    fn create(&self) -> RusticResult<()> {
        self.repository.create().map_err(|e| failed("creating", e))
    }

    fn write_bytes(
        &self,
        kind: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let body = crate::backup::joined(content);
        self.repository
            .write(kind_of(kind), &name_of(kind, id), &body)
            .map_err(|e| failed("writing", e))
    }

    fn remove(&self, kind: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let Some(kind) = kind_of(kind) else {
            return Err(RusticError::new(
                ErrorKind::Backend,
                "the vault never removes a repository's config",
            ));
        };
        self.repository
            .remove(kind, id.to_hex().as_str())
            .map_err(|e| failed("removing", e))
    }
}
