//! The target's side of a move: it answers the source agent for the moves its desired state
//! lists, and only that move's source node. It gives its manifest of the site's volume,
//! applies passes, loads the image, starts the site (checked to answer HTTP) and drops it
//! again if the freeze rolls back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alveole_model::{IncomingMove, NodeId, SiteMoveId};
use bytes::Bytes;
use futures::StreamExt;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::Board;
use super::peer::{AppliedPass, PeerHandler, PeerResponse, answer, body_stream};
use crate::engine::runtime::{MoveRuntime, Naming, RuntimeError, launch};
use crate::ingress::Ingress;
use crate::moves::volume_sync::{TreeWriter, scan};

/// Why a copied site could not be started here.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("the site is stopped: nothing to start")]
    Stopped,
    #[error("cannot make an HTTP client to check the site")]
    Client(#[source] reqwest::Error),
    #[error("the started site failed its health check: {last}")]
    Unhealthy { last: String },
}

/// How long a started site may take to answer its first HTTP request.
const HEALTHY_WITHIN: Duration = Duration::from_secs(20);

/// Answers source agents on this node's behalf.
#[derive(Debug)]
pub struct Target<R> {
    runtime: Arc<R>,
    naming: Naming,
    board: Arc<Board>,
    ingress: Arc<Ingress>,
}

impl<R: MoveRuntime + 'static> Target<R> {
    pub fn new(runtime: Arc<R>, naming: Naming, board: Arc<Board>, ingress: Arc<Ingress>) -> Self {
        Self {
            runtime,
            naming,
            board,
            ingress,
        }
    }

    async fn volume(&self, movement: &IncomingMove) -> Result<std::path::PathBuf, PeerResponse> {
        self.runtime
            .volume_path(&self.naming, movement.site.site_id)
            .await
            .map_err(|e| answer(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    }

    /// The target's entries; the temporaries of an interrupted pass go first.
    async fn manifest(&self, movement: &IncomingMove) -> Result<PeerResponse, PeerResponse> {
        let root = self.volume(movement).await?;
        let scanned = tokio::task::spawn_blocking(move || {
            let scanned = scan(&root)?;
            let writer = TreeWriter::open(&root)?;
            for partial in &scanned.partial {
                writer.remove(partial, false)?;
            }
            Ok::<_, crate::moves::volume_sync::SyncError>(scanned)
        })
        .await
        .map_err(|e| answer(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| answer(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(answer(
            StatusCode::OK,
            super::wire::encode_manifest(&scanned.entries),
        ))
    }

    async fn pass(
        &self,
        movement: &IncomingMove,
        request: Request<Incoming>,
    ) -> Result<PeerResponse, PeerResponse> {
        let root = self.volume(movement).await?;
        let mut reader = BlockingBody {
            stream: Box::pin(body_stream(request)),
            current: Bytes::new(),
            runtime: tokio::runtime::Handle::current(),
        };
        let applied = tokio::task::spawn_blocking(move || {
            let writer = TreeWriter::open(&root)?;
            super::wire::receive_pass(&mut reader, &writer)
        })
        .await
        .map_err(|e| answer(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| answer(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
        let body = serde_json::to_vec(&AppliedPass {
            files: applied.files,
            bytes: applied.bytes,
            removed: applied.removed,
            unstable: applied.unstable,
        })
        .unwrap_or_default();
        Ok(answer(StatusCode::OK, body))
    }

    async fn image(
        &self,
        movement: &IncomingMove,
        request: Request<Incoming>,
    ) -> Result<PeerResponse, PeerResponse> {
        let failed = |e: crate::engine::runtime::RuntimeError| {
            answer(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        };
        if request.method() == Method::GET {
            return match self.runtime.has_image(&movement.site.image).await {
                Ok(true) => Ok(answer(StatusCode::OK, "")),
                Ok(false) => Ok(answer(StatusCode::NOT_FOUND, "not here")),
                Err(error) => Err(failed(error)),
            };
        }
        self.runtime
            .load_image(Box::pin(body_stream(request)))
            .await
            .map_err(failed)?;
        match self.runtime.has_image(&movement.site.image).await {
            Ok(true) => Ok(answer(StatusCode::OK, "")),
            Ok(false) => Err(answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the archive loaded, but {} is not here",
                    movement.site.image
                ),
            )),
            Err(error) => Err(failed(error)),
        }
    }

    /// Starts the site from its copied volume, checks it answers HTTP, and routes its names
    /// here at once (forwarded requests may come before the next pass).
    async fn start(&self, movement: &IncomingMove) -> Result<PeerResponse, PeerResponse> {
        let address = self
            .launch_checked(movement)
            .await
            .map_err(|error| answer(StatusCode::INTERNAL_SERVER_ERROR, crate::describe(&error)))?;
        self.board.started(movement.id, address);
        let mut routes = (*self.ingress.routes()).clone();
        for hostname in &movement.site.hostnames {
            routes.insert(
                hostname,
                crate::ingress::Upstream {
                    site: movement.site.site_id,
                    address,
                },
            );
        }
        self.ingress.set_routes(routes);
        Ok(answer(StatusCode::OK, address.to_string()))
    }

    /// Starts the site afresh from its copy and waits until it answers HTTP.
    async fn launch_checked(&self, movement: &IncomingMove) -> Result<SocketAddr, StartError> {
        self.remove_containers(movement).await?;
        let address = launch(self.runtime.as_ref(), &self.naming, &movement.site)
            .await?
            .ok_or(StartError::Stopped)?;
        let host = movement
            .site
            .hostnames
            .first()
            .map(|h| h.to_string())
            .unwrap_or_default();
        healthy(address, &host).await?;
        Ok(address)
    }

    async fn remove_containers(&self, movement: &IncomingMove) -> Result<(), RuntimeError> {
        let observed = self.runtime.observe(&self.naming).await?;
        for container in observed
            .containers
            .iter()
            .filter(|c| c.site_id == movement.site.site_id)
        {
            self.runtime.remove(&container.id).await?;
        }
        Ok(())
    }

    async fn abort(&self, movement: &IncomingMove) -> Result<PeerResponse, PeerResponse> {
        self.board.forget_started(movement.id);
        self.remove_containers(movement)
            .await
            .map_err(|error| answer(StatusCode::INTERNAL_SERVER_ERROR, crate::describe(&error)))?;
        Ok(answer(StatusCode::OK, ""))
    }
}

/// Any HTTP answer below 500 from the site's server, within [`HEALTHY_WITHIN`].
async fn healthy(address: SocketAddr, host: &str) -> Result<(), StartError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(StartError::Client)?;
    let deadline = tokio::time::Instant::now() + HEALTHY_WITHIN;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match client
            .get(format!("http://{address}/"))
            .header(reqwest::header::HOST, host)
            .send()
            .await
        {
            Ok(response) if response.status().as_u16() < 500 => return Ok(()),
            Ok(response) => last = format!("it answered {}", response.status()),
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(StartError::Unhealthy { last })
}

#[async_trait::async_trait]
impl<R: MoveRuntime + 'static> PeerHandler for Target<R> {
    async fn handle(&self, peer: NodeId, request: Request<Incoming>) -> PeerResponse {
        let path: Vec<&str> = request.uri().path().split('/').skip(1).collect();
        let (id, what) = match path.as_slice() {
            ["moves", id, what] => (*id, (*what).to_owned()),
            _ => return answer(StatusCode::NOT_FOUND, "no such route"),
        };
        let Ok(id) = id.parse::<SiteMoveId>() else {
            return answer(StatusCode::BAD_REQUEST, "not a move id");
        };
        let Some(movement) = self.board.incoming(id) else {
            return answer(
                StatusCode::NOT_FOUND,
                "this node's desired state lists no such move (yet)",
            );
        };
        if movement.from_node != peer {
            tracing::warn!(%peer, move_id = %id, "a peer asked about a move it is not the source of");
            return answer(StatusCode::FORBIDDEN, "not this move's source node");
        }
        let method = request.method().clone();
        let outcome = match (method, what.as_str()) {
            (Method::GET, "manifest") => self.manifest(&movement).await,
            (Method::POST, "pass") => self.pass(&movement, request).await,
            (Method::GET | Method::PUT, "image") => self.image(&movement, request).await,
            (Method::POST, "start") => self.start(&movement).await,
            (Method::POST, "abort") => self.abort(&movement).await,
            _ => Err(answer(StatusCode::NOT_FOUND, "no such route")),
        };
        outcome.unwrap_or_else(|refusal| refusal)
    }
}

/// A request body read as `std::io::Read`, on a blocking thread.
struct BlockingBody<S> {
    stream: std::pin::Pin<Box<S>>,
    current: Bytes,
    runtime: tokio::runtime::Handle,
}

impl<S> std::io::Read for BlockingBody<S>
where
    S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Send,
{
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(error)) => return Err(error),
                None => return Ok(0),
            }
        }
        let n = buffer.len().min(self.current.len());
        buffer[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
