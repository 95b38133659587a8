//! The route table: every route of the panel is declared here once, with its access rule,
//! whether it changes state, and (for the API) its OpenAPI description. The axum router, the
//! OpenAPI document and the authorization tests are all built from this list, so a route
//! outside it cannot exist.

use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, patch, post};
use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::api::{self, Members, Nodes, Providers, Resource, Sites, agents, audit};
use crate::error::Problem;
use crate::{AppState, ops, pages};

/// Who may call a route. The identity issue refines `Owner` (a member's own resources) and
/// `Read` (auditors); until then every signed-in caller is the bootstrap admin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Admins and auditors may read; members read their own.
    Read,
    /// Admins, and members on their own resources.
    Owner,
    /// Admins only.
    Admin,
    /// Anyone signed in, whatever their role or token scope: for what concerns only the caller
    /// (who they are, signing out).
    SignedIn,
    /// A node's agent, with its own credential; nobody else.
    Agent,
}

/// Which face of the panel a route belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// JSON under `/api/v1`, bearer tokens, described in OpenAPI.
    Api,
    /// HTML pages, session cookies, CSRF tokens on forms.
    Page,
    /// Health and metrics for machines.
    Operations,
}

pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// What OpenAPI says of an API route.
#[derive(Clone, Debug, Default)]
pub struct ApiDoc {
    pub query: Vec<(&'static str, &'static str)>,
    pub request: Option<SchemaFn>,
    /// Success status, and its body schema.
    pub success: (u16, Option<SchemaFn>),
    /// Error statuses the route can answer (all with a problem document).
    pub errors: Vec<u16>,
}

#[derive(Debug)]
pub struct Route {
    pub method: Method,
    pub path: String,
    pub operation_id: String,
    pub summary: String,
    pub surface: Surface,
    pub access: Access,
    pub mutates: bool,
    pub doc: Option<ApiDoc>,
    pub(crate) handler: MethodRouter<AppState>,
}

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

pub fn problem_schema(generator: &mut SchemaGenerator) -> Schema {
    schema::<Problem>(generator)
}

struct Builder(Vec<Route>);

impl Builder {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        method: Method,
        path: impl Into<String>,
        operation_id: impl Into<String>,
        summary: impl Into<String>,
        surface: Surface,
        access: Access,
        doc: Option<ApiDoc>,
        handler: MethodRouter<AppState>,
    ) {
        let mutates = !matches!(method, Method::GET | Method::HEAD);
        self.0.push(Route {
            method,
            path: path.into(),
            operation_id: operation_id.into(),
            summary: summary.into(),
            surface,
            access,
            mutates,
            doc,
            handler,
        });
    }

    /// The five API operations of a resource.
    fn api<R: Resource>(&mut self, read: Access, write: Access) {
        let (kind, plural) = (R::KIND, R::PLURAL);
        let collection = format!("/api/v1/{plural}");
        let item = format!("/api/v1/{plural}/{{id}}");
        let doc = |request: Option<SchemaFn>, success: (u16, Option<SchemaFn>), errors: &[u16]| {
            Some(ApiDoc {
                query: vec![],
                request,
                success,
                errors: errors.to_vec(),
            })
        };
        let mut list_doc = doc(
            None,
            (200, Some(schema::<alveole_store::Page<R::Item>>)),
            &[400, 401],
        );
        if let Some(d) = list_doc.as_mut() {
            d.query = [
                ("cursor", "next_cursor of the previous page"),
                ("limit", "page size, 1 to 500 (default 50)"),
            ]
            .into_iter()
            .chain(R::FILTERS.iter().copied())
            .collect();
        }
        self.add(
            Method::GET,
            &collection,
            format!("list_{plural}"),
            format!("List {plural}"),
            Surface::Api,
            read,
            list_doc,
            get(api::list::<R>),
        );
        self.add(
            Method::POST,
            &collection,
            format!("create_{kind}"),
            format!("Create a {kind}"),
            Surface::Api,
            write,
            doc(
                Some(schema::<R::Input>),
                (201, Some(schema::<R::Item>)),
                &[400, 401, 409],
            ),
            post(api::create::<R>),
        );
        self.add(
            Method::GET,
            &item,
            format!("get_{kind}"),
            format!("Get a {kind}"),
            Surface::Api,
            read,
            doc(None, (200, Some(schema::<R::Item>)), &[400, 401, 404]),
            get(api::get::<R>),
        );
        self.add(
            Method::PATCH,
            &item,
            format!("update_{kind}"),
            format!("Change a {kind} (JSON Merge Patch with the version read)"),
            Surface::Api,
            write,
            doc(
                Some(schema::<PatchDoc>),
                (200, Some(schema::<R::Item>)),
                &[400, 401, 404, 409],
            ),
            patch(api::update::<R>),
        );
        let mut delete_doc = doc(None, (204, None), &[400, 401, 404, 409]);
        if let Some(d) = delete_doc.as_mut() {
            d.query = vec![("version", "refuse the deletion if the version changed")];
        }
        self.add(
            Method::DELETE,
            &item,
            format!("delete_{kind}"),
            format!("Delete a {kind}"),
            Surface::Api,
            write,
            delete_doc,
            delete(api::delete::<R>),
        );
    }

    /// The pages of a resource: list, detail, create, edit, delete; `read` for the first two,
    /// `write` for the rest.
    fn pages<R: pages::PageResource>(&mut self, read: Access, write: Access) {
        let plural = R::PLURAL;
        let page = |b: &mut Self,
                    method: Method,
                    path: String,
                    id: &str,
                    handler: MethodRouter<AppState>| {
            let access = match method {
                Method::GET if !path.ends_with("/new") && !path.ends_with("/edit") => read,
                _ => write,
            };
            b.add(
                method,
                path,
                format!("page_{id}"),
                String::new(),
                Surface::Page,
                access,
                None,
                handler,
            );
        };
        page(
            self,
            Method::GET,
            format!("/{plural}"),
            &format!("{plural}_list"),
            get(pages::list::<R>),
        );
        page(
            self,
            Method::GET,
            format!("/{plural}/new"),
            &format!("{plural}_new"),
            get(pages::new_form::<R>),
        );
        page(
            self,
            Method::POST,
            format!("/{plural}/new"),
            &format!("{plural}_create"),
            post(pages::create::<R>),
        );
        page(
            self,
            Method::GET,
            format!("/{plural}/{{id}}"),
            &format!("{plural}_show"),
            get(pages::show::<R>),
        );
        page(
            self,
            Method::GET,
            format!("/{plural}/{{id}}/edit"),
            &format!("{plural}_edit"),
            get(pages::edit_form::<R>),
        );
        page(
            self,
            Method::POST,
            format!("/{plural}/{{id}}/edit"),
            &format!("{plural}_update"),
            post(pages::update::<R>),
        );
        page(
            self,
            Method::POST,
            format!("/{plural}/{{id}}/delete"),
            &format!("{plural}_delete"),
            post(pages::delete::<R>),
        );
    }
}

/// A merge patch: any fields of the resource's input, plus the version the client read.
#[derive(JsonSchema)]
#[allow(dead_code)] // describes the PATCH body in OpenAPI only
struct PatchDoc {
    /// The `version` of the resource as read; a different current version answers 409.
    version: i64,
}

/// Every route of the panel.
pub fn routes() -> Vec<Route> {
    let mut b = Builder(Vec::new());
    b.add(
        Method::GET,
        "/healthz",
        "healthz",
        "Liveness and database check",
        Surface::Operations,
        Access::Public,
        None,
        get(ops::healthz),
    );
    b.add(
        Method::GET,
        "/metrics",
        "metrics",
        "Prometheus metrics",
        Surface::Operations,
        Access::Public,
        None,
        get(ops::metrics),
    );
    b.add(
        Method::GET,
        "/api/v1/openapi.json",
        "openapi",
        "This API's OpenAPI document",
        Surface::Api,
        Access::Public,
        Some(ApiDoc {
            success: (200, None),
            ..Default::default()
        }),
        get(ops::openapi),
    );
    b.api::<Providers>(Access::Read, Access::Admin);
    b.api::<Nodes>(Access::Read, Access::Admin);
    b.api::<Members>(Access::Read, Access::Admin);
    b.api::<Sites>(Access::Owner, Access::Owner);
    b.add(
        Method::POST,
        "/api/v1/nodes/{id}/join-token",
        "create_join_token",
        "A one-time token (24 h) for the node's agent to enrol",
        Surface::Api,
        Access::Admin,
        Some(ApiDoc {
            success: (201, Some(schema::<agents::JoinToken>)),
            errors: vec![400, 401, 403, 404],
            ..Default::default()
        }),
        post(agents::create_join_token),
    );
    b.add(
        Method::POST,
        "/api/v1/sites/{id}/purge",
        "purge_site",
        "Delete a site and its volume (DELETE keeps the volume)",
        Surface::Api,
        Access::Owner,
        Some(ApiDoc {
            query: vec![("version", "refuse if the version changed")],
            success: (204, None),
            errors: vec![400, 401, 404, 409],
            ..Default::default()
        }),
        post(agents::purge_site),
    );
    b.add(
        Method::DELETE,
        "/api/v1/nodes/{id}/credential",
        "revoke_agent",
        "Revoke the node's agent credential (it must enrol again)",
        Surface::Api,
        Access::Admin,
        Some(ApiDoc {
            success: (204, None),
            errors: vec![400, 401, 403, 404],
            ..Default::default()
        }),
        delete(agents::revoke),
    );
    b.add(
        Method::GET,
        "/api/v1/agent/ca",
        "agent_ca",
        "The CA agents pin (its fingerprint is in their join command)",
        Surface::Api,
        Access::Public,
        Some(ApiDoc {
            success: (200, Some(schema::<crate::tls::AgentCa>)),
            errors: vec![404],
            ..Default::default()
        }),
        get(agents::ca),
    );
    b.add(
        Method::POST,
        "/api/v1/agent/enroll",
        "enroll_agent",
        "Trade a join token and a signing request for the agent's client certificate",
        Surface::Api,
        Access::Public,
        Some(ApiDoc {
            request: Some(schema::<agents::EnrollRequest>),
            success: (201, Some(schema::<crate::tls::AgentCertificate>)),
            errors: vec![400, 401, 503],
            ..Default::default()
        }),
        post(agents::enroll),
    );
    b.add(
        Method::POST,
        "/api/v1/agent/certificate",
        "renew_agent_certificate",
        "A fresh client certificate for the calling agent's key (agents only)",
        Surface::Api,
        Access::Agent,
        Some(ApiDoc {
            request: Some(schema::<agents::RenewRequest>),
            success: (201, Some(schema::<crate::tls::AgentCertificate>)),
            errors: vec![400, 401, 403, 503],
            ..Default::default()
        }),
        post(agents::renew),
    );
    b.add(
        Method::GET,
        "/api/v1/agent/desired-state",
        "agent_desired_state",
        "The calling node's desired state (agents only)",
        Surface::Api,
        Access::Agent,
        Some(ApiDoc {
            query: vec![
                (
                    "after",
                    "answer once the generation is newer than this one (long poll)",
                ),
                (
                    "wait",
                    "seconds to wait for a newer generation (at most 60)",
                ),
            ],
            success: (200, Some(schema::<alveole_model::DesiredState>)),
            errors: vec![400, 401, 403],
            ..Default::default()
        }),
        get(agents::desired_state),
    );
    b.add(
        Method::POST,
        "/api/v1/agent/status",
        "agent_report",
        "The calling node's report after a pass (agents only)",
        Surface::Api,
        Access::Agent,
        Some(ApiDoc {
            request: Some(schema::<alveole_model::NodeReport>),
            success: (204, None),
            errors: vec![400, 401, 403],
            ..Default::default()
        }),
        post(agents::report),
    );
    b.add(
        Method::GET,
        "/api/v1/nodes/{id}/status",
        "get_node_status",
        "What the node's agent last reported, and whether the node is reachable",
        Surface::Api,
        Access::Read,
        Some(ApiDoc {
            success: (200, Some(schema::<agents::NodeStatusView>)),
            errors: vec![400, 401, 404],
            ..Default::default()
        }),
        get(agents::node_status),
    );
    audit_routes(&mut b);
    token_routes(&mut b);
    address_routes(&mut b);
    site_move_routes(&mut b);

    b.add(
        Method::GET,
        "/",
        "page_dashboard",
        "",
        Surface::Page,
        Access::Owner,
        None,
        get(pages::dashboard),
    );
    b.add(
        Method::GET,
        "/login",
        "page_login",
        "",
        Surface::Page,
        Access::Public,
        None,
        get(pages::login_form),
    );
    b.add(
        Method::POST,
        "/login",
        "page_login_submit",
        "",
        Surface::Page,
        Access::Public,
        None,
        post(pages::login),
    );
    b.add(
        Method::GET,
        "/login/oidc",
        "page_login_oidc",
        "",
        Surface::Page,
        Access::Public,
        None,
        get(pages::oidc_start),
    );
    b.add(
        Method::GET,
        "/login/oidc/callback",
        "page_login_oidc_callback",
        "",
        Surface::Page,
        Access::Public,
        None,
        get(pages::oidc_callback),
    );
    b.add(
        Method::GET,
        "/break-glass",
        "page_break_glass",
        "",
        Surface::Page,
        Access::Public,
        None,
        get(pages::break_glass_form),
    );
    b.add(
        Method::POST,
        "/break-glass",
        "page_break_glass_use",
        "",
        Surface::Page,
        Access::Public,
        None,
        post(pages::break_glass),
    );
    b.add(
        Method::POST,
        "/logout",
        "page_logout",
        "",
        Surface::Page,
        Access::SignedIn,
        None,
        post(pages::logout),
    );
    b.add(
        Method::GET,
        "/language/{lang}",
        "page_language",
        "",
        Surface::Page,
        Access::Public,
        None,
        get(pages::language),
    );
    b.add(
        Method::GET,
        "/static/alveole.css",
        "static_css",
        "",
        Surface::Page,
        Access::Public,
        None,
        get(pages::stylesheet),
    );
    b.pages::<Providers>(Access::Read, Access::Admin);
    b.pages::<Nodes>(Access::Read, Access::Admin);
    b.add(
        Method::POST,
        "/nodes/{id}/join-token",
        "page_nodes_join_token",
        "",
        Surface::Page,
        Access::Admin,
        None,
        post(pages::node_join_token),
    );
    b.pages::<Members>(Access::Read, Access::Admin);
    b.pages::<Sites>(Access::Owner, Access::Owner);
    b.add(
        Method::GET,
        "/audit",
        "page_audit",
        "",
        Surface::Page,
        Access::Read,
        None,
        get(pages::audit::record),
    );
    b.add(
        Method::GET,
        "/audit/report",
        "page_audit_report",
        "",
        Surface::Page,
        Access::Read,
        None,
        get(pages::audit::report),
    );
    b.add(
        Method::GET,
        "/addresses",
        "page_addresses",
        "",
        Surface::Page,
        Access::Read,
        None,
        get(pages::addresses::page),
    );
    b.add(
        Method::POST,
        "/addresses/pools",
        "page_addresses_pool",
        "",
        Surface::Page,
        Access::Admin,
        None,
        post(pages::addresses::create_pool),
    );
    b.add(
        Method::POST,
        "/addresses/allocations",
        "page_addresses_allocate",
        "",
        Surface::Page,
        Access::Admin,
        None,
        post(pages::addresses::allocate),
    );
    b.add(
        Method::POST,
        "/addresses/allocations/{address}/release",
        "page_addresses_release",
        "",
        Surface::Page,
        Access::Admin,
        None,
        post(pages::addresses::release),
    );
    b.add(
        Method::POST,
        "/addresses/allocations/{address}/move",
        "page_addresses_move",
        "",
        Surface::Page,
        Access::Admin,
        None,
        post(pages::addresses::move_address),
    );
    b.add(
        Method::POST,
        "/addresses/allocations/{address}/cancel-move",
        "page_addresses_cancel_move",
        "",
        Surface::Page,
        Access::Admin,
        None,
        post(pages::addresses::cancel_move),
    );
    b.add(
        Method::GET,
        "/evacuations",
        "page_evacuations",
        "",
        Surface::Page,
        Access::Read,
        None,
        get(pages::evacuations::page),
    );
    b.add(
        Method::POST,
        "/evacuations/start",
        "page_evacuation_start",
        "",
        Surface::Page,
        Access::Admin,
        None,
        post(pages::evacuations::start),
    );
    b.add(
        Method::POST,
        "/evacuations/{id}/{verb}",
        "page_evacuation_change",
        "",
        Surface::Page,
        Access::Admin,
        None,
        post(pages::evacuations::change),
    );
    for (path, operation, handler) in [
        (
            "/sites/{id}/move",
            "page_site_move",
            post(pages::site_moves::move_site),
        ),
        (
            "/site-moves/{id}/cancel",
            "page_site_move_cancel",
            post(pages::site_moves::cancel),
        ),
        (
            "/site-moves/{id}/finish",
            "page_site_move_finish",
            post(pages::site_moves::finish),
        ),
    ] {
        b.add(
            Method::POST,
            path,
            operation,
            "",
            Surface::Page,
            Access::Admin,
            None,
            handler,
        );
    }
    b.add(
        Method::GET,
        "/inventory",
        "page_inventory",
        "",
        Surface::Page,
        Access::Read,
        None,
        get(pages::audit::inventory),
    );
    b.add(
        Method::POST,
        "/audit/checkpoints",
        "page_audit_sign_checkpoint",
        "",
        Surface::Page,
        Access::Admin,
        None,
        post(pages::audit::sign_checkpoint),
    );
    b.0
}

/// The filters shared by the audit list, exports and report.
const AUDIT_FILTERS: [(&str, &str); 6] = [
    (
        "from",
        "from this day (2026-11-01) or instant (RFC 3339), included",
    ),
    ("to", "up to this day or instant, excluded"),
    ("actor", "who acted (bootstrap-admin, node:ID, system:...)"),
    ("action", "what was done (site.create, node.revoke, ...)"),
    (
        "target_kind",
        "what kind of thing it was done to (site, node, ...)",
    ),
    ("target_id", "which one"),
];

fn address_routes(b: &mut Builder) {
    use api::addresses;
    let doc = |request: Option<SchemaFn>, success: (u16, Option<SchemaFn>), errors: &[u16]| {
        Some(ApiDoc {
            request,
            success,
            errors: errors.to_vec(),
            ..Default::default()
        })
    };
    b.add(
        Method::GET,
        "/api/v1/ip-pools",
        "list_ip_pools",
        "The co-op's address pools, with how many addresses are used and free",
        Surface::Api,
        Access::Read,
        doc(
            None,
            (200, Some(schema::<Vec<addresses::PoolView>>)),
            &[401, 403],
        ),
        get(addresses::pools),
    );
    b.add(
        Method::POST,
        "/api/v1/ip-pools",
        "create_ip_pool",
        "A pool of addresses (a prefix) at a provider",
        Surface::Api,
        Access::Admin,
        doc(
            Some(schema::<addresses::NewPool>),
            (201, Some(schema::<addresses::PoolView>)),
            &[400, 401, 403, 404, 409],
        ),
        post(addresses::create_pool),
    );
    b.add(
        Method::DELETE,
        "/api/v1/ip-pools/{id}",
        "delete_ip_pool",
        "Removes a pool none of whose addresses is allocated",
        Surface::Api,
        Access::Admin,
        doc(None, (204, None), &[400, 401, 403, 404, 409]),
        delete(addresses::delete_pool),
    );
    b.add(
        Method::GET,
        "/api/v1/ip-allocations",
        "list_ip_allocations",
        "Every allocated address: its pool, node and dedicated site",
        Surface::Api,
        Access::Read,
        doc(
            None,
            (200, Some(schema::<Vec<alveole_model::IpAllocation>>)),
            &[401, 403],
        ),
        get(addresses::allocations),
    );
    b.add(
        Method::POST,
        "/api/v1/ip-pools/{id}/allocations",
        "allocate_ip",
        "Allocates an address of the pool (given, or the first free) to a node or a site",
        Surface::Api,
        Access::Admin,
        doc(
            Some(schema::<addresses::NewAllocation>),
            (201, Some(schema::<alveole_model::IpAllocation>)),
            &[400, 401, 403, 404, 409],
        ),
        post(addresses::allocate),
    );
    b.add(
        Method::DELETE,
        "/api/v1/ip-allocations/{address}",
        "release_ip",
        "Releases an allocated address",
        Surface::Api,
        Access::Admin,
        doc(None, (204, None), &[400, 401, 403, 404]),
        delete(addresses::release),
    );
    b.add(
        Method::POST,
        "/api/v1/ip-allocations/{address}/move",
        "move_ip",
        "Moves an address to another node: the old node lets it go, the provider routes it, \
         then the new node announces it (force: without waiting for the old node)",
        Surface::Api,
        Access::Admin,
        doc(
            Some(schema::<addresses::MoveRequest>),
            (202, Some(schema::<alveole_model::AddressMove>)),
            &[400, 401, 403, 404, 409],
        ),
        post(addresses::move_address),
    );
    b.add(
        Method::DELETE,
        "/api/v1/ip-allocations/{address}/move",
        "cancel_ip_move",
        "Gives a moving address back to its old node",
        Surface::Api,
        Access::Admin,
        doc(None, (204, None), &[400, 401, 403, 404]),
        delete(addresses::cancel_move),
    );
    b.add(
        Method::GET,
        "/api/v1/address-moves",
        "list_address_moves",
        "Addresses on their way to another node, with why a move is not finished",
        Surface::Api,
        Access::Read,
        doc(
            None,
            (200, Some(schema::<Vec<alveole_model::AddressMove>>)),
            &[401, 403],
        ),
        get(addresses::moves),
    );
}

fn site_move_routes(b: &mut Builder) {
    use crate::api::site_moves;
    let doc = |request: Option<SchemaFn>, success: (u16, Option<SchemaFn>), errors: &[u16]| {
        Some(ApiDoc {
            query: vec![],
            request,
            success,
            errors: errors.to_vec(),
        })
    };
    let one = || Some(schema::<alveole_model::SiteMove> as SchemaFn);
    let many = || Some(schema::<Vec<alveole_model::SiteMove>> as SchemaFn);
    b.add(
        Method::POST,
        "/api/v1/sites/{id}/move",
        "move_site",
        "Moves a site to another node: its volume is copied while it serves, then it is frozen \
         for a last copy and switched; its old node forwards its requests for a while",
        Surface::Api,
        Access::Admin,
        doc(
            Some(schema::<site_moves::MoveRequest>),
            (202, one()),
            &[400, 401, 403, 404, 409],
        ),
        post(site_moves::start),
    );
    b.add(
        Method::GET,
        "/api/v1/sites/{id}/moves",
        "list_site_moves",
        "A site's moves, newest first (its history), with each one's progress and freeze window",
        Surface::Api,
        Access::Read,
        doc(None, (200, many()), &[400, 401, 403, 404]),
        get(site_moves::of_site),
    );
    b.add(
        Method::GET,
        "/api/v1/evacuation-plan",
        "plan_evacuation",
        "Where every site of a node or a provider would go, how long moving them would take at \
         the measured throughput, and whether a deadline holds (and if not, what would make it)",
        Surface::Api,
        Access::Read,
        Some(ApiDoc {
            query: vec![
                ("node_id", "the node to empty"),
                ("provider_id", "or every node of this provider"),
                ("deadline", "RFC 3339: by when"),
                ("parallelism", "moves at once, 1 to 32 (4 by default)"),
            ],
            request: None,
            success: (
                200,
                Some(schema::<alveole_model::evacuation::EvacuationPlan>),
            ),
            errors: vec![400, 401, 403, 404],
        }),
        get(crate::api::evacuations::plan),
    );
    let evacuation = || Some(schema::<alveole_model::evacuation::Evacuation> as SchemaFn);
    b.add(
        Method::POST,
        "/api/v1/evacuations",
        "start_evacuation",
        "Plans an evacuation (as the plan route does) and runs it as a durable job: moves in the \
         plan's order, `parallelism` at a time; a failed site does not stop the others",
        Surface::Api,
        Access::Admin,
        doc(
            Some(schema::<crate::api::evacuations::PlanQuery>),
            (202, evacuation()),
            &[400, 401, 403, 404],
        ),
        post(crate::api::evacuations::start),
    );
    b.add(
        Method::GET,
        "/api/v1/evacuations",
        "list_evacuations",
        "Evacuations, newest first, each site with where its move stands",
        Surface::Api,
        Access::Read,
        doc(
            None,
            (
                200,
                Some(schema::<Vec<alveole_model::evacuation::Evacuation>>),
            ),
            &[401, 403],
        ),
        get(crate::api::evacuations::list),
    );
    b.add(
        Method::GET,
        "/api/v1/evacuations/{id}",
        "get_evacuation",
        "One evacuation, each site with where its move stands",
        Surface::Api,
        Access::Read,
        doc(None, (200, evacuation()), &[400, 401, 403, 404]),
        get(crate::api::evacuations::get),
    );
    for (verb, operation, summary, handler) in [
        (
            "pause",
            "pause_evacuation",
            "Pauses an evacuation: no new move starts; those under way finish",
            post(crate::api::evacuations::pause),
        ),
        (
            "resume",
            "resume_evacuation",
            "Resumes a paused evacuation",
            post(crate::api::evacuations::resume),
        ),
        (
            "cancel",
            "cancel_evacuation",
            "Cancels an evacuation: the sites not started stay; moves under way finish",
            post(crate::api::evacuations::cancel),
        ),
    ] {
        b.add(
            Method::POST,
            format!("/api/v1/evacuations/{{id}}/{verb}"),
            operation,
            summary,
            Surface::Api,
            Access::Admin,
            doc(None, (200, evacuation()), &[400, 401, 403, 404, 409]),
            handler,
        );
    }
    b.add(
        Method::GET,
        "/api/v1/site-moves",
        "list_all_site_moves",
        "Every site move, newest first",
        Surface::Api,
        Access::Read,
        doc(None, (200, many()), &[401, 403]),
        get(site_moves::list),
    );
    b.add(
        Method::GET,
        "/api/v1/site-moves/{id}",
        "get_site_move",
        "One site move, with its progress",
        Surface::Api,
        Access::Read,
        doc(None, (200, one()), &[400, 401, 403, 404]),
        get(site_moves::get),
    );
    b.add(
        Method::POST,
        "/api/v1/site-moves/{id}/cancel",
        "cancel_site_move",
        "Cancels a move before its switch: the site stays on its node",
        Surface::Api,
        Access::Admin,
        doc(None, (200, one()), &[400, 401, 403, 404, 409]),
        post(site_moves::cancel),
    );
    b.add(
        Method::POST,
        "/api/v1/site-moves/{id}/finish",
        "finish_site_move",
        "Ends a switched move's forwarding early: the old node stops forwarding and drops its copy",
        Surface::Api,
        Access::Admin,
        doc(None, (200, one()), &[400, 401, 403, 404, 409]),
        post(site_moves::finish),
    );
    b.add(
        Method::POST,
        "/api/v1/agent/site-moves/{id}/progress",
        "agent_site_move_progress",
        "The source node's progress on a move (agents only)",
        Surface::Api,
        Access::Agent,
        doc(
            Some(schema::<alveole_model::MoveProgress>),
            (204, None),
            &[400, 401, 403, 404],
        ),
        post(site_moves::agent_progress),
    );
    b.add(
        Method::POST,
        "/api/v1/agent/site-moves/{id}/switch",
        "agent_site_move_switch",
        "The source asks for the switch: the site becomes the target's (agents only)",
        Surface::Api,
        Access::Agent,
        doc(
            Some(schema::<alveole_model::MoveOutcome>),
            (200, one()),
            &[400, 401, 403, 404, 409],
        ),
        post(site_moves::agent_switch),
    );
    b.add(
        Method::POST,
        "/api/v1/agent/site-moves/{id}/fail",
        "agent_site_move_fail",
        "The source rolled back: the site stays its (agents only)",
        Surface::Api,
        Access::Agent,
        doc(
            Some(schema::<alveole_model::MoveOutcome>),
            (200, one()),
            &[400, 401, 403, 404, 409],
        ),
        post(site_moves::agent_fail),
    );
}

fn token_routes(b: &mut Builder) {
    b.add(
        Method::POST,
        "/api/v1/members/{id}/disable",
        "disable_member",
        "Offboards a member: their tokens stop, their sites are handed over or stopped",
        Surface::Api,
        Access::Admin,
        Some(ApiDoc {
            request: Some(schema::<api::offboarding::Disable>),
            success: (204, None),
            errors: vec![400, 401, 403, 404],
            ..Default::default()
        }),
        post(api::offboarding::disable),
    );
    b.add(
        Method::POST,
        "/api/v1/members/{id}/tokens",
        "create_api_token",
        "A new API token for the member (shown once), read-only or full, expiring",
        Surface::Api,
        Access::Admin,
        Some(ApiDoc {
            request: Some(schema::<api::tokens::NewToken>),
            success: (201, Some(schema::<api::tokens::CreatedToken>)),
            errors: vec![400, 401, 403, 404],
            ..Default::default()
        }),
        post(api::tokens::create),
    );
    b.add(
        Method::GET,
        "/api/v1/members/{id}/tokens",
        "list_api_tokens",
        "The member's API tokens (never their secrets)",
        Surface::Api,
        Access::Admin,
        Some(ApiDoc {
            success: (200, Some(schema::<Vec<alveole_store::ApiToken>>)),
            errors: vec![400, 401, 403, 404],
            ..Default::default()
        }),
        get(api::tokens::list),
    );
    b.add(
        Method::DELETE,
        "/api/v1/tokens/{id}",
        "revoke_api_token",
        "Revokes an API token: it stops working at once",
        Surface::Api,
        Access::Admin,
        Some(ApiDoc {
            success: (204, None),
            errors: vec![400, 401, 403, 404],
            ..Default::default()
        }),
        delete(api::tokens::revoke),
    );
}

fn audit_routes(b: &mut Builder) {
    b.add(
        Method::GET,
        "/api/v1/me",
        "get_me",
        "Who the caller is, and with which role",
        Surface::Api,
        Access::SignedIn,
        Some(ApiDoc {
            success: (200, Some(schema::<api::Me>)),
            errors: vec![401],
            ..Default::default()
        }),
        get(api::me),
    );
    b.add(
        Method::GET,
        "/api/v1/inventory",
        "get_inventory",
        "The platform inventory: providers, nodes and their software, sites per node, licences",
        Surface::Api,
        Access::Read,
        Some(ApiDoc {
            success: (200, Some(schema::<crate::inventory::Inventory>)),
            errors: vec![401],
            ..Default::default()
        }),
        get(api::inventory),
    );
    let mut events_query = AUDIT_FILTERS.to_vec();
    events_query.push(("after", "the chain position after which to list"));
    events_query.push((
        "limit",
        "at most this many events (1 to 1000, 100 by default)",
    ));
    b.add(
        Method::GET,
        "/api/v1/audit/events",
        "list_audit_events",
        "Audit events in chain order, filtered",
        Surface::Api,
        Access::Owner,
        Some(ApiDoc {
            query: events_query,
            success: (200, Some(schema::<audit::EventPage>)),
            errors: vec![400, 401],
            ..Default::default()
        }),
        get(audit::events),
    );
    let mut export_query = AUDIT_FILTERS.to_vec();
    export_query.push((
        "format",
        "jsonl (verifiable on its own with `alveole audit verify --export`) or csv",
    ));
    b.add(
        Method::GET,
        "/api/v1/audit/export",
        "export_audit",
        "The audit record for the board, as JSON Lines or CSV",
        Surface::Api,
        Access::Owner,
        Some(ApiDoc {
            query: export_query,
            success: (200, None),
            errors: vec![400, 401],
            ..Default::default()
        }),
        get(audit::export),
    );
    b.add(
        Method::GET,
        "/api/v1/audit/verify",
        "verify_audit",
        "Checks the whole audit chain, its columns and its checkpoints",
        Surface::Api,
        Access::Read,
        Some(ApiDoc {
            success: (200, Some(schema::<alveole_store::AuditVerification>)),
            errors: vec![401],
            ..Default::default()
        }),
        get(audit::verify),
    );
    b.add(
        Method::GET,
        "/api/v1/audit/checkpoints",
        "list_audit_checkpoints",
        "The newest signed checkpoints of the audit chain",
        Surface::Api,
        Access::Read,
        Some(ApiDoc {
            success: (200, Some(schema::<Vec<alveole_store::Checkpoint>>)),
            errors: vec![401],
            ..Default::default()
        }),
        get(audit::checkpoints),
    );
    b.add(
        Method::POST,
        "/api/v1/audit/checkpoints",
        "create_audit_checkpoint",
        "Signs a checkpoint of the audit chain now",
        Surface::Api,
        Access::Admin,
        Some(ApiDoc {
            success: (201, Some(schema::<alveole_store::Checkpoint>)),
            errors: vec![401, 403, 503],
            ..Default::default()
        }),
        post(audit::create_checkpoint),
    );
    b.add(
        Method::GET,
        "/api/v1/audit/checkpoints/latest",
        "latest_audit_checkpoint",
        "The newest signed checkpoint (public: keep copies of it elsewhere)",
        Surface::Api,
        Access::Public,
        Some(ApiDoc {
            success: (200, Some(schema::<alveole_store::Checkpoint>)),
            errors: vec![404],
            ..Default::default()
        }),
        get(audit::latest_checkpoint),
    );
    b.add(
        Method::GET,
        "/api/v1/audit/keys",
        "list_audit_keys",
        "The public keys that sign checkpoints, current and retired (public)",
        Surface::Api,
        Access::Public,
        Some(ApiDoc {
            success: (200, Some(schema::<Vec<alveole_store::PublishedKey>>)),
            errors: vec![],
            ..Default::default()
        }),
        get(audit::keys),
    );
}
