//! A site's databases (its owner's).

use super::{Access, Get, Post, Put, Table};
use crate::api::databases;
use crate::service::databases::SiteDatabase;

pub(super) fn pages(t: &mut Table) {
    t.page(
        Post,
        "/sites/{id}/databases/{name}/password",
        crate::pages::databases::rotate,
    )
    .named("page_sites_database_password", "")
    .access(Access::Owner);
}

pub(super) fn api(t: &mut Table) {
    t.api(Get, "/api/v1/sites/{id}/databases", databases::of_site)
        .named(
            "list_site_databases",
            "A site's databases: engine and version, where the site's container reaches each \
             (its own 127.0.0.1), the variables that hold the settings and the password, the \
             quota and what the volume held at the node's last measurement. Passwords are \
             never shown",
        )
        .access(Access::Owner)
        .returns::<Vec<SiteDatabase>>(200)
        .errors(&[400, 401, 404]);
    t.api(
        Post,
        "/api/v1/sites/{id}/databases/{name}/password",
        databases::rotate_password,
    )
    .named(
        "rotate_site_database_password",
        "Gives the database a new password: the node sets it in the server, then restarts \
         the site's container with it in its variables",
    )
    .access(Access::Owner)
    .returns::<Vec<SiteDatabase>>(200)
    .errors(&[400, 401, 404, 409, 503]);
    t.api(
        Get,
        "/api/v1/sites/{id}/databases/{name}/dump",
        databases::dump,
    )
    .named(
        "dump_site_database",
        "A consistent dump of the database in plain SQL (mariadb-dump --single-transaction, \
         pg_dump), streamed from its node as it is read; loadable into an empty database of \
         the same engine. Its owner's and the admins' (not auditors'). Audited as \
         database.dump",
    )
    .access(Access::OwnersData)
    .status(200)
    .errors(&[400, 401, 403, 404, 409, 502, 503]);
    t.api(
        Put,
        "/api/v1/sites/{id}/databases/{name}/dump",
        databases::import,
    )
    .named(
        "import_site_database",
        "Replaces the database's content with the dump in the body (plain SQL, at most the \
         database's quota), loaded into a scratch database first: a dump that does not load \
         is refused with the server's error and changes nothing",
    )
    .access(Access::Owner)
    .returns::<Vec<SiteDatabase>>(200)
    .errors(&[400, 401, 404, 409, 502, 503]);
}
