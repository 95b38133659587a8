//! The vault role: a node that keeps other nodes' backups, at another provider. It speaks
//! restic's REST protocol (the one of restic's `rest-server`, so that `restic` itself, and
//! rustic, back up to it and restore from it) on the agents' listener, over their mutual TLS:
//! a node is known by its certificate, and writes only to the repositories it is granted.
//!
//! Nodes write append-only ([`repository`]): a file is written once, hashed to its name, never
//! replaced; a node may remove its locks and nothing else, so that a compromised node cannot
//! delete or rewrite a snapshot. Only the vault itself prunes.
//!
//! Requests: `/vault/<repository>/` followed by restic's paths (`?create=true`, `config`,
//! `<kind>/`, `<kind>/<name>`), with v1 and v2 listings and byte ranges.

pub mod check;
pub mod local;
pub mod prune;
pub mod repository;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use alveole_model::NodeId;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode, header};

use crate::moves::peer::{PeerHandler, PeerResponse, answer};
use repository::{Kind, Repository, RepositoryError};

/// The largest file a node may send (restic's packs are 16 MiB by default, 128 MiB at most).
pub const MAX_FILE_BYTES: usize = 256 << 20;

/// restic's media type for listings with sizes (REST protocol v2).
const LIST_V2: &str = "application/vnd.x.restic.rest.v2";

/// Which node may write to which repository.
pub type Grants = BTreeMap<String, BTreeSet<NodeId>>;

/// The repositories this node keeps, and who may write to each.
#[derive(Debug)]
pub struct Vault {
    root: PathBuf,
    grants: RwLock<Grants>,
    /// How each repository is used: requests under way, the last one, a pruning.
    uses: Mutex<BTreeMap<String, Use>>,
}

#[derive(Debug, Default)]
struct Use {
    in_flight: usize,
    last: Option<std::time::Instant>,
    pruning: bool,
}

/// A request on a repository, under way until dropped.
struct InUse<'a> {
    vault: &'a Vault,
    name: String,
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        let mut uses = self.vault.lock_uses();
        if let Some(used) = uses.get_mut(&self.name) {
            used.in_flight = used.in_flight.saturating_sub(1);
            used.last = Some(std::time::Instant::now());
        }
    }
}

/// The vault prunes a repository until dropped: its requests answer 503 meanwhile.
#[derive(Debug)]
pub struct Pruning {
    vault: Arc<Vault>,
    name: String,
}

impl Drop for Pruning {
    fn drop(&mut self) {
        if let Some(used) = self.vault.lock_uses().get_mut(&self.name) {
            used.pruning = false;
            used.last = Some(std::time::Instant::now());
        }
    }
}

/// A repository's name: letters, digits and `-` (a site's id), 1 to 64 of them.
fn valid_repository(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Vault {
    /// A vault keeping its repositories under `root`, granting nothing yet.
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            grants: RwLock::new(Grants::new()),
            uses: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock_uses(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Use>> {
        self.uses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A request on `name` begins; `None` while the vault prunes it.
    fn begin(&self, name: &str) -> Option<InUse<'_>> {
        let mut uses = self.lock_uses();
        let used = uses.entry(name.to_owned()).or_default();
        if used.pruning {
            return None;
        }
        used.in_flight += 1;
        used.last = Some(std::time::Instant::now());
        Some(InUse {
            vault: self,
            name: name.to_owned(),
        })
    }

    /// Starts pruning `name` when no node has used it for `idle` (since this vault
    /// started, at least): `None` otherwise. Requests on it are refused until the guard goes,
    /// so that nothing writes beside the pruning.
    pub fn start_pruning(
        self: &Arc<Self>,
        name: &str,
        idle: std::time::Duration,
        started: std::time::Instant,
    ) -> Option<Pruning> {
        let mut uses = self.lock_uses();
        let used = uses.entry(name.to_owned()).or_default();
        let quiet_since = used.last.unwrap_or(started);
        if used.pruning || used.in_flight > 0 || quiet_since.elapsed() < idle {
            return None;
        }
        used.pruning = true;
        Some(Pruning {
            vault: self.clone(),
            name: name.to_owned(),
        })
    }

    /// Replaces who may write where (from the node's desired state).
    pub fn set_grants(&self, grants: Grants) {
        *self
            .grants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = grants;
    }

    fn granted(&self, repository: &str, node: NodeId) -> bool {
        self.grants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(repository)
            .is_some_and(|nodes| nodes.contains(&node))
    }

    /// The repository at `name`, kept under the vault's root.
    pub fn repository(&self, name: &str) -> Repository {
        Repository::at(self.root.join(name))
    }
}

#[async_trait::async_trait]
impl PeerHandler for Vault {
    /// Answers a node's request under `/vault/`.
    async fn handle(&self, peer: NodeId, request: Request<Incoming>) -> PeerResponse {
        let path = request.uri().path().to_owned();
        let Some(rest) = path.strip_prefix("/vault/") else {
            return answer(StatusCode::NOT_FOUND, "no such route");
        };
        let (name, within) = rest.split_once('/').unwrap_or((rest, ""));
        if !valid_repository(name) {
            return answer(StatusCode::NOT_FOUND, "no such repository");
        }
        if !self.granted(name, peer) {
            tracing::warn!(%peer, repository = name, "a node asked the vault for a repository it is not granted");
            return answer(
                StatusCode::FORBIDDEN,
                "this node is not granted this repository",
            );
        }
        let Some(_in_use) = self.begin(name) else {
            let mut response = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "the vault is pruning this repository: try again in a few minutes",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("300"));
            return response;
        };
        let repository = self.repository(name);
        let within = within.to_owned();
        match serve(&repository, request, &within).await {
            Ok(response) => response,
            Err(error) => {
                let status = match &error {
                    RepositoryError::NotFound => StatusCode::NOT_FOUND,
                    RepositoryError::Exists(_) | RepositoryError::Refused(_) => {
                        StatusCode::FORBIDDEN
                    }
                    RepositoryError::WrongHash(_) | RepositoryError::Malformed(_) => {
                        StatusCode::BAD_REQUEST
                    }
                    RepositoryError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                    RepositoryError::Io(e) => {
                        tracing::error!(repository = name, error = %e, "the vault's disk failed");
                        StatusCode::INTERNAL_SERVER_ERROR
                    }
                };
                answer(status, error.to_string())
            }
        }
    }
}

/// One request of restic's REST protocol on `repository`; `path` is what follows the
/// repository's name.
async fn serve(
    repository: &Repository,
    request: Request<Incoming>,
    path: &str,
) -> Result<PeerResponse, RepositoryError> {
    let method = request.method().clone();
    let create = request.uri().query() == Some("create=true");
    let (kind, name) = match path.split_once('/') {
        None if path.is_empty() => (None, None),
        None => (None, Some(path.to_owned())),
        Some((kind, "")) => (Some(parse_kind(kind)?), None),
        Some((kind, name)) => (Some(parse_kind(kind)?), Some(name.to_owned())),
    };
    match (method, kind, name.as_deref()) {
        (Method::POST, None, None) if create => {
            repository.create()?;
            Ok(answer(StatusCode::OK, ""))
        }
        (Method::GET, Some(kind), None) => {
            let v2 = request
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains(LIST_V2));
            let files = repository.list(kind)?;
            let body = if v2 {
                serde_json::to_vec(
                    &files
                        .iter()
                        .map(|(name, size)| serde_json::json!({"name": name, "size": size}))
                        .collect::<Vec<_>>(),
                )
            } else {
                serde_json::to_vec(&files.iter().map(|(name, _)| name).collect::<Vec<_>>())
            }
            .map_err(std::io::Error::other)?;
            let mut response = answer(StatusCode::OK, body);
            let content_type = if v2 { LIST_V2 } else { "application/json" };
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(content_type),
            );
            Ok(response)
        }
        (Method::HEAD, kind, Some(name)) => {
            let size = repository.size(kind, name)?;
            let mut response = answer(StatusCode::OK, "");
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, header::HeaderValue::from(size));
            Ok(response)
        }
        (Method::GET, kind, Some(name)) => {
            let range = request
                .headers()
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .map(parse_range)
                .transpose()?;
            let (offset, length) = range.unwrap_or((0, None));
            let name = name.to_owned();
            let bytes =
                off_thread(repository, move |r| r.read(kind, &name, offset, length)).await?;
            let status = if range.is_some() {
                StatusCode::PARTIAL_CONTENT
            } else {
                StatusCode::OK
            };
            Ok(answer(status, bytes))
        }
        (Method::POST, kind, Some(name)) => {
            let body = http_body_util::Limited::new(request.into_body(), MAX_FILE_BYTES)
                .collect()
                .await
                .map_err(|_| RepositoryError::TooLarge)?
                .to_bytes();
            let name = name.to_owned();
            off_thread(repository, move |r| r.write(kind, &name, &body)).await?;
            Ok(answer(StatusCode::OK, ""))
        }
        (Method::DELETE, Some(Kind::Locks), Some(name)) => {
            repository.remove_lock(name)?;
            Ok(answer(StatusCode::OK, ""))
        }
        (Method::DELETE, _, _) => Err(RepositoryError::Refused(
            "the vault is append-only: a node removes its locks, nothing else",
        )),
        _ => Err(RepositoryError::NotFound),
    }
}

/// Runs a disk operation off the async threads (reading, hashing and syncing a pack takes a
/// while).
async fn off_thread<T: Send + 'static>(
    repository: &Repository,
    operation: impl FnOnce(&Repository) -> Result<T, RepositoryError> + Send + 'static,
) -> Result<T, RepositoryError> {
    let repository = repository.clone();
    tokio::task::spawn_blocking(move || operation(&repository))
        .await
        .map_err(|e| RepositoryError::Io(std::io::Error::other(e)))?
}

fn parse_kind(text: &str) -> Result<Kind, RepositoryError> {
    Kind::parse(text).ok_or(RepositoryError::NotFound)
}

/// `bytes=<first>-<last>` (last optional) as (offset, length).
fn parse_range(text: &str) -> Result<(u64, Option<u64>), RepositoryError> {
    let refused = || RepositoryError::Malformed("a range is bytes=<first>-<last>");
    let (first, last) = text
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(refused)?;
    let first: u64 = first.trim().parse().map_err(|_| refused())?;
    let last = last.trim();
    if last.is_empty() {
        return Ok((first, None));
    }
    let last: u64 = last.parse().map_err(|_| refused())?;
    if last < first {
        return Err(refused());
    }
    Ok((first, Some(last - first + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_names_are_read_strictly() {
        assert_eq!(parse_range("bytes=0-9").unwrap(), (0, Some(10)));
        assert_eq!(parse_range("bytes=5-").unwrap(), (5, None));
        assert!(parse_range("bytes=9-0").is_err());
        assert!(parse_range("items=0-9").is_err());
        assert!(valid_repository("0193c2a4-site"));
        assert!(!valid_repository("../other"));
        assert!(!valid_repository(""));
    }

    #[test]
    fn a_repository_is_pruned_only_when_idle_and_refuses_requests_meanwhile() {
        let vault = Arc::new(Vault::new(
            std::env::temp_dir().join("alveole-vault-unused"),
        ));
        let long_ago = std::time::Instant::now()
            .checked_sub(std::time::Duration::from_secs(3600))
            .unwrap();
        let idle = std::time::Duration::from_secs(600);
        let request = vault.begin("site").unwrap();
        assert!(
            vault.start_pruning("site", idle, long_ago).is_none(),
            "a request is under way"
        );
        drop(request);
        assert!(
            vault.start_pruning("site", idle, long_ago).is_none(),
            "used a moment ago"
        );
        assert!(
            vault.start_pruning("other", idle, long_ago).is_some(),
            "never used since long ago"
        );
        let pruning = vault.start_pruning("quiet", idle, long_ago).expect("idle");
        assert!(vault.begin("quiet").is_none(), "refused while pruning");
        assert!(vault.start_pruning("quiet", idle, long_ago).is_none());
        drop(pruning);
        assert!(vault.begin("quiet").is_some(), "served again");
    }
}
