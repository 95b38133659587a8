//! Node agents: join tokens, enrolment, renewal, revocation, desired state and reports; and
//! a node's status.

use alveole_model::{DesiredState, NodeReport};

use super::{Access, Delete, Get, Post, Table};
use crate::api::agents::{self, EnrollRequest, RenewRequest};
use crate::service::agents::{JoinToken, NodeStatusView};
use crate::tls::{AgentCa, AgentCertificate};

pub(super) fn api(t: &mut Table) {
    t.api(
        Post,
        "/api/v1/nodes/{id}/join-token",
        agents::create_join_token,
    )
    .named(
        "create_join_token",
        "A one-time token (24 h) for the node's agent to enrol",
    )
    .returns::<JoinToken>(201)
    .errors(&[400, 401, 403, 404]);
    t.api(Delete, "/api/v1/nodes/{id}/credential", agents::revoke)
        .named(
            "revoke_agent",
            "Revoke the node's agent credential (it must enrol again)",
        )
        .status(204)
        .errors(&[400, 401, 403, 404]);
    t.api(Get, "/api/v1/agent/ca", agents::ca)
        .named(
            "agent_ca",
            "The CA agents pin (its fingerprint is in their join command)",
        )
        .access(Access::Public)
        .returns::<AgentCa>(200)
        .errors(&[404]);
    t.api(Post, "/api/v1/agent/enroll", agents::enroll)
        .named(
            "enroll_agent",
            "Trade a join token and a signing request for the agent's client certificate",
        )
        .access(Access::Public)
        .takes::<EnrollRequest>()
        .returns::<AgentCertificate>(201)
        .errors(&[400, 401, 503]);
    t.api(Post, "/api/v1/agent/certificate", agents::renew)
        .named(
            "renew_agent_certificate",
            "A fresh client certificate for the calling agent's key (agents only)",
        )
        .access(Access::Agent)
        .takes::<RenewRequest>()
        .returns::<AgentCertificate>(201)
        .errors(&[400, 401, 403, 503]);
    t.api(Get, "/api/v1/agent/desired-state", agents::desired_state)
        .named(
            "agent_desired_state",
            "The calling node's desired state (agents only)",
        )
        .access(Access::Agent)
        .query(&[
            (
                "after",
                "answer once the generation is newer than this one (long poll)",
            ),
            (
                "wait",
                "seconds to wait for a newer generation (at most 60)",
            ),
        ])
        .returns::<DesiredState>(200)
        .errors(&[400, 401, 403]);
    t.api(Post, "/api/v1/agent/status", agents::report)
        .named(
            "agent_report",
            "The calling node's report after a pass (agents only)",
        )
        .access(Access::Agent)
        .takes::<NodeReport>()
        .status(204)
        .errors(&[400, 401, 403]);
    t.api(Get, "/api/v1/nodes/{id}/status", agents::node_status)
        .named(
            "get_node_status",
            "What the node's agent last reported, and whether the node is reachable",
        )
        .access(Access::Read)
        .returns::<NodeStatusView>(200)
        .errors(&[400, 401, 404]);
}
