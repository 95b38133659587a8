//! restic's REST protocol as a rustic_core backend, on the agent's own HTTP client (reqwest
//! with rustls and ring; the vault is reached over the agents' mutual TLS). rustic_core calls
//! its backends from its own threads, synchronously: each call runs on the agent's runtime
//! through its handle, so rustic_core must run off the runtime's threads (`spawn_blocking`).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use reqwest::StatusCode;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

/// restic's media type for listings with sizes (REST protocol v2).
const LIST_V2: &str = "application/vnd.x.restic.rest.v2";

/// Packs sent at once: rustic_core hands them over one after the other, and the server
/// hashes and syncs each before it answers; two overlap that with the next pack's sending.
const PACKS_IN_FLIGHT: usize = 2;

/// One repository behind a REST server.
#[derive(Clone, Debug)]
pub struct RestBackend {
    http: reqwest::Client,
    /// The repository's address, ending with `/`.
    base: String,
    runtime: tokio::runtime::Handle,
    uploads: Arc<Uploads>,
}

/// Packs on their way. Any other write (an index, a snapshot, a key) waits for them all
/// first, and fails if one did: nothing ever names a pack that is not stored.
#[derive(Debug)]
struct Uploads {
    slots: Arc<tokio::sync::Semaphore>,
    pending: Mutex<Vec<tokio::task::JoinHandle<RusticResult<()>>>>,
}

fn failed(what: &str, error: impl std::fmt::Display) -> Box<RusticError> {
    RusticError::new(
        ErrorKind::Backend,
        format!("the backup server: {what}: {error}"),
    )
}

fn kind_dir(kind: FileType) -> &'static str {
    match kind {
        FileType::Config => "config",
        FileType::Index => "index",
        FileType::Key => "keys",
        FileType::Snapshot => "snapshots",
        FileType::Pack => "data",
    }
}

#[derive(serde::Deserialize)]
struct Listed {
    name: String,
    size: u64,
}

impl RestBackend {
    /// The repository at `base` (`https://…/vault/<repository>/`), through `http`, calling
    /// from rustic_core's threads onto `runtime`.
    pub fn new(http: reqwest::Client, base: String, runtime: tokio::runtime::Handle) -> Self {
        let base = if base.ends_with('/') {
            base
        } else {
            format!("{base}/")
        };
        Self {
            http,
            base,
            runtime,
            uploads: Arc::new(Uploads {
                slots: Arc::new(tokio::sync::Semaphore::new(PACKS_IN_FLIGHT)),
                pending: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Waits for the packs on their way: the first failure, if one failed.
    fn settle_uploads(&self) -> RusticResult<()> {
        let pending: Vec<_> = std::mem::take(
            &mut *self
                .uploads
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut first_error = None;
        for upload in pending {
            let outcome = self
                .runtime
                .block_on(upload)
                .unwrap_or_else(|e| Err(failed("writing a pack", e)));
            if let (Err(error), None) = (outcome, &first_error) {
                first_error = Some(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Sends a pack in the background, once a slot is free.
    fn send_pack(&self, url: String, body: Vec<u8>) -> RusticResult<()> {
        let slot = self
            .runtime
            .block_on(self.uploads.slots.clone().acquire_owned())
            .map_err(|e| failed("writing a pack", e))?;
        let request = self.http.post(url).body(body);
        let upload = self.runtime.spawn(async move {
            let _slot = slot;
            let response = request
                .send()
                .await
                .map_err(|e| failed("writing a pack", e))?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                let body = response.bytes().await.unwrap_or_default();
                Err(failed(
                    "writing a pack",
                    format!("{status}: {}", String::from_utf8_lossy(&body)),
                ))
            }
        });
        let mut pending = self
            .uploads
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget the packs already stored, keep an earlier failure for the next barrier.
        let mut kept = Vec::with_capacity(pending.len() + 1);
        for done in pending.drain(..) {
            if done.is_finished() {
                match self.runtime.block_on(done) {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return Err(error),
                    Err(error) => return Err(failed("writing a pack", error)),
                }
            } else {
                kept.push(done);
            }
        }
        kept.push(upload);
        *pending = kept;
        Ok(())
    }

    fn url(&self, kind: FileType, id: &Id) -> String {
        match kind {
            FileType::Config => format!("{}config", self.base),
            kind => format!("{}{}/{}", self.base, kind_dir(kind), id.to_hex().as_str()),
        }
    }

    /// Sends a request and checks its status: the answer's body.
    fn call(&self, what: &str, request: reqwest::RequestBuilder) -> RusticResult<Bytes> {
        self.runtime.block_on(async {
            let response = request.send().await.map_err(|e| failed(what, e))?;
            let status = response.status();
            let body = response.bytes().await.map_err(|e| failed(what, e))?;
            if status.is_success() {
                Ok(body)
            } else {
                Err(failed(
                    what,
                    format!("{status}: {}", String::from_utf8_lossy(&body)),
                ))
            }
        })
    }
}

impl ReadBackend for RestBackend {
    fn location(&self) -> String {
        format!("rest:{}", self.base)
    }

    fn list_with_size(&self, kind: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if kind == FileType::Config {
            // The config is one file, without an id: listed when it exists.
            let url = format!("{}config", self.base);
            let exists = self.runtime.block_on(async {
                let response = self
                    .http
                    .head(&url)
                    .send()
                    .await
                    .map_err(|e| failed("config", e))?;
                Ok::<_, Box<RusticError>>(match response.status() {
                    status if status.is_success() => response.content_length(),
                    StatusCode::NOT_FOUND => None,
                    status => return Err(failed("config", status)),
                })
            })?;
            return Ok(exists
                .map(|size| (Id::default(), u32::try_from(size).unwrap_or(u32::MAX)))
                .into_iter()
                .collect());
        }
        let url = format!("{}{}/", self.base, kind_dir(kind));
        let body = self.call(
            "listing",
            self.http.get(&url).header(reqwest::header::ACCEPT, LIST_V2),
        )?;
        let listed: Vec<Listed> =
            serde_json::from_slice(&body).map_err(|e| failed("listing", e))?;
        listed
            .into_iter()
            .map(|file| {
                let id = file.name.parse::<Id>().map_err(|e| failed("listing", e))?;
                Ok((id, u32::try_from(file.size).unwrap_or(u32::MAX)))
            })
            .collect()
    }

    fn read_full(&self, kind: FileType, id: &Id) -> RusticResult<Bytes> {
        self.call("reading", self.http.get(self.url(kind, id)))
    }

    fn read_partial(
        &self,
        kind: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let last = u64::from(offset) + u64::from(length).saturating_sub(1);
        self.call(
            "reading",
            self.http
                .get(self.url(kind, id))
                .header(reqwest::header::RANGE, format!("bytes={offset}-{last}")),
        )
    }

    fn warmup_path(&self, kind: FileType, id: &Id) -> String {
        self.url(kind, id)
    }
}

impl WriteBackend for RestBackend {
    fn create(&self) -> RusticResult<()> {
        self.call(
            "creating the repository",
            self.http.post(format!("{}?create=true", self.base)),
        )
        .map(|_| ())
    }

    fn write_bytes(
        &self,
        kind: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let body = super::joined(content);
        if kind == FileType::Pack {
            return self.send_pack(self.url(kind, id), body);
        }
        // An index or a snapshot names packs: they must all be stored first.
        self.settle_uploads()?;
        self.call("writing", self.http.post(self.url(kind, id)).body(body))
            .map(|_| ())
    }

    fn remove(&self, kind: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        self.settle_uploads()?;
        self.call("removing", self.http.delete(self.url(kind, id)))
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A REST server that stores nothing: every pack write fails, every other one succeeds.
    async fn refusing_packs() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(|request: hyper::Request<_>| async move {
                            let status = if request.uri().path().contains("/data/") {
                                500
                            } else {
                                200
                            };
                            let mut response =
                                hyper::Response::new(http_body_util::Full::new(Bytes::new()));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        at
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_names_a_pack_that_was_not_stored() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let at = refusing_packs().await;
        let backend = RestBackend::new(
            reqwest::Client::new(),
            format!("http://{at}/repository"),
            tokio::runtime::Handle::current(),
        );
        let outcome = tokio::task::spawn_blocking(move || {
            let pack = BytesList::from(Bytes::from_static(b"pack"));
            // Sent in the background: the caller goes on at once.
            backend.write_bytes(FileType::Pack, &Id::default(), false, pack)?;
            let index = BytesList::from(Bytes::from_static(b"index"));
            backend.write_bytes(FileType::Index, &Id::default(), false, index)
        })
        .await
        .unwrap();
        let error = outcome.expect_err("the index waits for its pack, which failed");
        assert!(error.to_string().contains("writing a pack"), "{error}");
    }
}
