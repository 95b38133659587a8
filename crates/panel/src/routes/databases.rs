//! A site's databases (its owner's).

use super::{Access, Get, Post, Table};
use crate::api::databases;
use crate::service::databases::SiteDatabase;

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
}
