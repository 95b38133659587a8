//! The panel asking an agent for something, for a member who waits for the answer (a
//! database's dump, an import; a site's logs next): HTTP over mutual TLS to the peer address
//! the node last reported, with a client certificate the panel issues itself from its CA
//! (named `panel.alveole.invalid`, an hour long), the agent's certificate checked by its
//! node's name. Agents otherwise only pull from the panel; nothing here changes desired state.

use alveole_model::NodeId;

use super::Service;
use crate::error::{ApiError, ApiResult};

/// How long an agent may take to answer (a large dump is written before it is sent).
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(600);

impl Service {
    /// A request to `node`'s agent for `path` (under `/panel/`).
    pub(crate) async fn agent_request(
        &self,
        node: NodeId,
        method: reqwest::Method,
        path: &str,
    ) -> ApiResult<reqwest::RequestBuilder> {
        let tls = self
            .config()
            .agent_tls
            .as_ref()
            .ok_or(ApiError::Unavailable(
                "the panel serves no agents (it has no agents' CA): nothing can be asked of a node",
            ))?;
        let at = self
            .store()
            .node_status(node)
            .await?
            .and_then(|status| status.report.endpoints)
            .and_then(|endpoints| endpoints.peer)
            .ok_or_else(|| ApiError::Conflict {
                message: "the node's agent has not said where it listens for the panel's \
                          requests: it runs with --peer-listen (on by default)"
                    .into(),
                errors: vec![],
            })?;
        let identity = tls.issuer.panel_identity(self.now()).map_err(|error| {
            tracing::error!(%error, "the panel's own certificate");
            ApiError::Unavailable("the panel cannot make its own certificate (see the log)")
        })?;
        let name = crate::tls::node_name(node);
        let client = reqwest::Client::builder()
            .tls_certs_only(
                reqwest::Certificate::from_pem_bundle(tls.ca.ca_pem.as_bytes())
                    .map_err(client_error)?,
            )
            .identity(reqwest::Identity::from_pem(identity.as_bytes()).map_err(client_error)?)
            .resolve(&name, at)
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(ANSWER_WITHIN)
            .build()
            .map_err(client_error)?;
        Ok(client.request(method, format!("https://{name}:{}{path}", at.port())))
    }
}

fn client_error(error: reqwest::Error) -> ApiError {
    tracing::error!(%error, "the panel's client for agents");
    ApiError::Unavailable("the panel cannot make its client for agents (see the log)")
}

/// The agent's answer, or why it could not be had: unreachable (502), or refused with its
/// reason (422 for what the request asked, 502 otherwise).
pub(crate) async fn answered(request: reqwest::RequestBuilder) -> ApiResult<reqwest::Response> {
    let response = request
        .send()
        .await
        .map_err(|error| ApiError::Upstream(format!("the node's agent did not answer: {error}")))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let why = response.text().await.unwrap_or_default();
    Err(match status.as_u16() {
        404 => ApiError::Conflict {
            message: format!("the node does not run this yet: {why}"),
            errors: vec![],
        },
        413 | 422 => ApiError::BadRequest(why),
        _ => ApiError::Upstream(format!("the node's agent refused ({status}): {why}")),
    })
}
