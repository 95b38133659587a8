//! restic's REST protocol as a rustic_core backend, on the agent's own HTTP client (reqwest
//! with rustls and ring; the vault is reached over the agents' mutual TLS). rustic_core calls
//! its backends from its own threads, synchronously: each call runs on the agent's runtime
//! through its handle, so rustic_core must run off the runtime's threads (`spawn_blocking`).

use bytes::Bytes;
use reqwest::StatusCode;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

/// restic's media type for listings with sizes (REST protocol v2).
const LIST_V2: &str = "application/vnd.x.restic.rest.v2";

/// One repository behind a REST server.
#[derive(Clone, Debug)]
pub struct RestBackend {
    http: reqwest::Client,
    /// The repository's address, ending with `/`.
    base: String,
    runtime: tokio::runtime::Handle,
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
        }
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
        let mut body = Vec::with_capacity(content.size());
        for part in content.into_vec() {
            body.extend_from_slice(&part);
        }
        self.call("writing", self.http.post(self.url(kind, id)).body(body))
            .map(|_| ())
    }

    fn remove(&self, kind: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        self.call("removing", self.http.delete(self.url(kind, id)))
            .map(|_| ())
    }
}
