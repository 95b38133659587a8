//! What the panel asks of this agent directly, on the peer listener (mutual TLS, the panel's
//! own certificate from its CA): a database's dump streamed out, a dump streamed in and
//! imported. Agents otherwise only pull from the panel; these answers are for a member
//! waiting at the panel, so they cannot wait for a document's round trip. Which sites and
//! databases exist is the held document's say: nothing is asked of what it does not list.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use alveole_model::{DatabaseSpec, DesiredState, SiteId};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper::{Method, Request, Response, StatusCode};

use crate::engine::runtime::{MoveRuntime, Naming};
use crate::moves::peer::{PanelHandler, PanelResponse};

impl<R> std::fmt::Debug for PanelRequests<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PanelRequests")
            .field("scratch", &self.scratch)
            .finish_non_exhaustive()
    }
}

pub struct PanelRequests<R> {
    runtime: Arc<R>,
    naming: Naming,
    held: RwLock<Option<Arc<DesiredState>>>,
    /// Where dumps wait while they are streamed (the agent's state directory).
    scratch: PathBuf,
}

impl<R: MoveRuntime + 'static> PanelRequests<R> {
    pub fn new(runtime: Arc<R>, naming: Naming, scratch: PathBuf) -> Self {
        Self {
            runtime,
            naming,
            held: RwLock::new(None),
            scratch,
        }
    }

    /// Answers from this document on (called at every pass).
    pub fn follow(&self, held: &DesiredState) {
        *self
            .held
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(held.clone()));
    }

    fn database(&self, site: SiteId, name: &str) -> Option<DatabaseSpec> {
        let held = self
            .held
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        let spec = held.sites.iter().find(|s| s.site_id == site)?;
        spec.databases.iter().find(|db| db.name == name).cloned()
    }

    fn scratch_file(&self, what: &str) -> Result<PathBuf, std::io::Error> {
        std::fs::create_dir_all(&self.scratch)?;
        Ok(self
            .scratch
            .join(format!("{what}-{}.sql", uuid::Uuid::now_v7().simple())))
    }

    async fn dump(&self, site: SiteId, db: &DatabaseSpec) -> PanelResponse {
        let file = match self.scratch_file("dump") {
            Ok(file) => file,
            Err(error) => return text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        };
        let server = self.naming.database(site, &db.name);
        let dumped = crate::engine::database::dump(self.runtime.as_ref(), &server, db, &file).await;
        let opened = match dumped {
            Ok(()) => tokio::fs::File::open(&file).await,
            Err(error) => {
                let _ = std::fs::remove_file(&file);
                return text(StatusCode::UNPROCESSABLE_ENTITY, error);
            }
        };
        // Unlinked at once: the open file is read to its end, nothing is left behind.
        let _ = std::fs::remove_file(&file);
        match opened {
            Ok(opened) => file_response(opened),
            Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        }
    }

    async fn import(
        &self,
        site: SiteId,
        db: &DatabaseSpec,
        request: Request<hyper::body::Incoming>,
    ) -> PanelResponse {
        let file = match self.scratch_file("import") {
            Ok(file) => file,
            Err(error) => return text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        };
        let outcome = async {
            receive(request, &file, db.quota_bytes).await?;
            let server = self.naming.database(site, &db.name);
            crate::engine::database::import(self.runtime.as_ref(), &server, db, &file)
                .await
                .map_err(|why| (StatusCode::UNPROCESSABLE_ENTITY, why))
        }
        .await;
        let _ = std::fs::remove_file(&file);
        match outcome {
            Ok(()) => text(StatusCode::OK, "imported".into()),
            Err((status, why)) => text(status, why),
        }
    }
}

#[async_trait::async_trait]
impl<R: MoveRuntime + 'static> PanelHandler for PanelRequests<R> {
    async fn handle(&self, request: Request<hyper::body::Incoming>) -> PanelResponse {
        let path = request.uri().path().to_owned();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        // `alveole_model::database::dump_path`.
        let ["panel", "sites", site, "databases", name, "dump"] = parts.as_slice() else {
            return text(StatusCode::NOT_FOUND, format!("nothing at {path}"));
        };
        let Ok(site) = site.parse::<SiteId>() else {
            return text(StatusCode::NOT_FOUND, "no such site".into());
        };
        let Some(db) = self.database(site, name) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("no database {name} of site {site} on this node"),
            );
        };
        match *request.method() {
            Method::GET => self.dump(site, &db).await,
            Method::PUT => self.import(site, &db, request).await,
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "GET or PUT".into()),
        }
    }
}

/// Writes the request's body into `file`, refusing one larger than `limit` bytes.
async fn receive(
    request: Request<hyper::body::Incoming>,
    file: &Path,
    limit: u64,
) -> Result<(), (StatusCode, String)> {
    use tokio::io::AsyncWriteExt;
    let io = |e: std::io::Error| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let mut out = tokio::fs::File::create(file).await.map_err(io)?;
    let mut body = request.into_body();
    let mut written: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        written += data.len() as u64;
        if written > limit {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the dump is larger than the database's quota ({limit} bytes)"),
            ));
        }
        out.write_all(&data).await.map_err(io)?;
    }
    out.sync_all().await.map_err(io)?;
    Ok(())
}

fn text(status: StatusCode, body: String) -> PanelResponse {
    let body = http_body_util::Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

/// The file as the answer's body, read as it is sent.
fn file_response(file: tokio::fs::File) -> PanelResponse {
    use tokio::io::AsyncReadExt;
    let chunks = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buffer = vec![0u8; 64 << 10];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Bytes::from(buffer)), Some(file)))
            }
            Err(error) => Some((Err(error), None)),
        }
    });
    let frames = chunks.map(|chunk| chunk.map(hyper::body::Frame::data));
    let body = BodyExt::boxed(http_body_util::StreamBody::new(frames));
    let mut response = Response::new(body);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/sql"),
    );
    response
}
