//! The route table: every route of the panel is declared once, with its access rule, whether
//! it changes state, and (for the API) its OpenAPI description. The axum router, the OpenAPI
//! document and the authorization tests are all built from this list, so a route outside it
//! cannot exist. One file per area adds its routes; [`routes`] joins them.

mod addresses;
mod agents;
mod audit;
mod backups;
mod certificates;
mod databases;
mod members;
mod moves;
mod records;
mod sign_in;

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};
use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::error::Problem;
use crate::{AppState, ops};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Admins and auditors may read; members read their own.
    Read,
    /// Admins, and members on their own resources.
    Owner,
    /// As `Owner`, but not auditors, even to read: a member's data (a database's content),
    /// not the record of what was done.
    OwnersData,
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

/// The HTTP method of a route, written once: it gives both the table's method and the
/// router's.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Put => Method::PUT,
            Verb::Patch => Method::PATCH,
            Verb::Delete => Method::DELETE,
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

pub(crate) use Verb::{Delete, Get, Patch, Post, Put};

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

pub fn problem_schema(generator: &mut SchemaGenerator) -> Schema {
    schema::<Problem>(generator)
}

impl Route {
    /// Its operation id and summary (OpenAPI's, for API routes).
    pub(crate) fn named(&mut self, id: impl Into<String>, summary: impl Into<String>) -> &mut Self {
        self.operation_id = id.into();
        self.summary = summary.into();
        self
    }

    pub(crate) fn access(&mut self, access: Access) -> &mut Self {
        self.access = access;
        self
    }

    fn doc(&mut self) -> &mut ApiDoc {
        self.doc.get_or_insert_with(ApiDoc::default)
    }

    /// Its query parameters, with what each means.
    pub(crate) fn query(&mut self, query: &[(&'static str, &'static str)]) -> &mut Self {
        self.doc().query = query.to_vec();
        self
    }

    /// The JSON body it takes.
    pub(crate) fn takes<T: JsonSchema>(&mut self) -> &mut Self {
        self.doc().request = Some(schema::<T>);
        self
    }

    /// Its success status, with a body of `T`.
    pub(crate) fn returns<T: JsonSchema>(&mut self, status: u16) -> &mut Self {
        self.doc().success = (status, Some(schema::<T>));
        self
    }

    /// Its success status, with no body (or one OpenAPI does not describe).
    pub(crate) fn status(&mut self, status: u16) -> &mut Self {
        self.doc().success = (status, None);
        self
    }

    /// The error statuses it may answer, each with a problem document.
    pub(crate) fn errors(&mut self, errors: &[u16]) -> &mut Self {
        self.doc().errors = errors.to_vec();
        self
    }
}

/// The table being built. A route's access is `Admin` until said otherwise: a route whose
/// rule was forgotten is closed, not open.
pub(crate) struct Table(Vec<Route>);

impl Table {
    fn add<H, T>(&mut self, verb: Verb, path: &str, surface: Surface, handler: H) -> &mut Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let method = verb.method();
        self.0.push(Route {
            mutates: !matches!(method, Method::GET | Method::HEAD),
            method,
            path: path.to_owned(),
            operation_id: String::new(),
            summary: String::new(),
            surface,
            access: Access::Admin,
            doc: (surface == Surface::Api).then(ApiDoc::default),
            handler: on(verb.filter(), handler),
        });
        let last = self.0.len() - 1;
        &mut self.0[last]
    }

    /// A JSON route under `/api/v1`.
    pub(crate) fn api<H, T>(&mut self, verb: Verb, path: &str, handler: H) -> &mut Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(verb, path, Surface::Api, handler)
    }

    /// An HTML page or one of its forms.
    pub(crate) fn page<H, T>(&mut self, verb: Verb, path: &str, handler: H) -> &mut Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(verb, path, Surface::Page, handler)
    }

    /// A route for machines (health, metrics).
    fn operations<H, T>(&mut self, path: &str, handler: H) -> &mut Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Get, path, Surface::Operations, handler)
    }
}

/// Every route of the panel.
pub fn routes() -> Vec<Route> {
    let mut t = Table(Vec::new());
    t.operations("/healthz", ops::healthz)
        .named("healthz", "Liveness and database check")
        .access(Access::Public);
    t.operations("/metrics", ops::metrics)
        .named("metrics", "Prometheus metrics")
        .access(Access::Public);
    t.api(Get, "/api/v1/openapi.json", ops::openapi)
        .named("openapi", "This API's OpenAPI document")
        .access(Access::Public)
        .status(200);
    records::api(&mut t);
    agents::api(&mut t);
    audit::api(&mut t);
    members::api(&mut t);
    addresses::api(&mut t);
    moves::api(&mut t);
    backups::api(&mut t);
    certificates::api(&mut t);
    databases::api(&mut t);

    sign_in::pages(&mut t);
    records::pages(&mut t);
    audit::pages(&mut t);
    addresses::pages(&mut t);
    moves::pages(&mut t);
    backups::pages(&mut t);
    certificates::pages(&mut t);
    databases::pages(&mut t);
    t.0
}
