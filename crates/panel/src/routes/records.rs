//! The five API operations and the pages of every resource: providers, nodes, members, sites.

use alveole_model::{Member, Node, Provider, Site};
use schemars::JsonSchema;

use super::{Access, Delete, Get, Patch, Post, Table};
use crate::api::records as api;
use crate::pages::{self, PageResource};
use crate::service::Resource;

/// A merge patch: any fields of the resource's input, plus the version the client read.
#[derive(JsonSchema)]
#[allow(dead_code)] // describes the PATCH body in OpenAPI only
struct PatchDoc {
    /// The `version` of the resource as read; a different current version answers 409.
    version: i64,
}

pub(super) fn api(t: &mut Table) {
    resource_api::<Provider>(t, Access::Read, Access::Admin);
    resource_api::<Node>(t, Access::Read, Access::Admin);
    resource_api::<Member>(t, Access::Read, Access::Admin);
    resource_api::<Site>(t, Access::Owner, Access::Owner);
    t.api(Post, "/api/v1/sites/{id}/purge", api::purge_site)
        .named(
            "purge_site",
            "Delete a site and its volume (DELETE keeps the volume)",
        )
        .access(Access::Owner)
        .query(&[("version", "refuse if the version changed")])
        .status(204)
        .errors(&[400, 401, 404, 409]);
}

/// The five API operations of a resource.
pub(super) fn resource_api<R: Resource>(t: &mut Table, read: Access, write: Access) {
    let (kind, plural) = (R::KIND, R::PLURAL);
    let collection = format!("/api/v1/{plural}");
    let item = format!("/api/v1/{plural}/{{id}}");
    let list_query: Vec<_> = [
        ("cursor", "next_cursor of the previous page"),
        ("limit", "page size, 1 to 500 (default 50)"),
    ]
    .into_iter()
    .chain(R::FILTERS.iter().copied())
    .collect();
    t.api(Get, &collection, api::list::<R>)
        .named(format!("list_{plural}"), format!("List {plural}"))
        .access(read)
        .query(&list_query)
        .returns::<alveole_store::Page<R>>(200)
        .errors(&[400, 401]);
    t.api(Post, &collection, api::create::<R>)
        .named(format!("create_{kind}"), format!("Create a {kind}"))
        .access(write)
        .takes::<R::Input>()
        .returns::<R>(201)
        .errors(&[400, 401, 409]);
    t.api(Get, &item, api::get::<R>)
        .named(format!("get_{kind}"), format!("Get a {kind}"))
        .access(read)
        .returns::<R>(200)
        .errors(&[400, 401, 404]);
    t.api(Patch, &item, api::update::<R>)
        .named(
            format!("update_{kind}"),
            format!("Change a {kind} (JSON Merge Patch with the version read)"),
        )
        .access(write)
        .takes::<PatchDoc>()
        .returns::<R>(200)
        .errors(&[400, 401, 404, 409]);
    t.api(Delete, &item, api::delete::<R>)
        .named(format!("delete_{kind}"), format!("Delete a {kind}"))
        .access(write)
        .query(&[("version", "refuse the deletion if the version changed")])
        .status(204)
        .errors(&[400, 401, 404, 409]);
}

pub(super) fn pages(t: &mut Table) {
    resource_pages::<Provider>(t, Access::Read, Access::Admin);
    resource_pages::<Node>(t, Access::Read, Access::Admin);
    t.page(Post, "/nodes/{id}/join-token", pages::nodes::join_token)
        .named("page_nodes_join_token", "")
        .access(Access::Admin);
    resource_pages::<Member>(t, Access::Read, Access::Admin);
    resource_pages::<Site>(t, Access::Owner, Access::Owner);
}

/// The pages of a resource: list and detail for `read`; create, edit and delete for `write`.
pub(super) fn resource_pages<R: PageResource>(t: &mut Table, read: Access, write: Access) {
    use pages::records as page;
    let plural = R::PLURAL;
    let id = |action: &str| format!("page_{plural}_{action}");
    t.page(Get, &format!("/{plural}"), page::list::<R>)
        .named(id("list"), "")
        .access(read);
    t.page(Get, &format!("/{plural}/new"), page::new_form::<R>)
        .named(id("new"), "")
        .access(write);
    t.page(Post, &format!("/{plural}/new"), page::create::<R>)
        .named(id("create"), "")
        .access(write);
    t.page(Get, &format!("/{plural}/{{id}}"), page::show::<R>)
        .named(id("show"), "")
        .access(read);
    t.page(Get, &format!("/{plural}/{{id}}/edit"), page::edit_form::<R>)
        .named(id("edit"), "")
        .access(write);
    t.page(Post, &format!("/{plural}/{{id}}/edit"), page::update::<R>)
        .named(id("update"), "")
        .access(write);
    t.page(Post, &format!("/{plural}/{{id}}/delete"), page::delete::<R>)
        .named(id("delete"), "")
        .access(write);
}
