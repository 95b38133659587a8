//! HTTPS: a site's certificate (its owner's).

use super::{Access, Delete, Get, Post, Table};
use crate::api::certificates;
use crate::service::certificates::{CertificateUpload, SiteCertificate};

pub(super) fn api(t: &mut Table) {
    t.api(Get, "/api/v1/sites/{id}/certificate", certificates::of_site)
        .named(
            "get_site_certificate",
            "A site's HTTPS: the certificate served (issuer, names, validity, ACME's or the \
             member's own), when it is renewed, the last renewal and the last error (a failed \
             challenge, a name that points elsewhere, a rate limit), the names not covered",
        )
        .access(Access::Owner)
        .returns::<SiteCertificate>(200)
        .errors(&[400, 401, 404]);
    t.api(Post, "/api/v1/sites/{id}/certificate", certificates::upload)
        .named(
            "upload_site_certificate",
            "Serves the site with the member's own certificate (PEM: the site's certificate \
             first, then its chain; and its key): a bad chain, a key that is not the \
             certificate's, a certificate outside its validity or naming what the site does \
             not answer for is refused on its field. The panel orders nothing for the site \
             while it is in place",
        )
        .access(Access::Owner)
        .takes::<CertificateUpload>()
        .returns::<SiteCertificate>(200)
        .errors(&[400, 401, 404]);
    t.api(
        Delete,
        "/api/v1/sites/{id}/certificate",
        certificates::remove,
    )
    .named(
        "remove_site_certificate",
        "Stops serving the site's certificate; with ACME on for the site, a new one is \
             ordered at once",
    )
    .access(Access::Owner)
    .returns::<SiteCertificate>(200)
    .errors(&[400, 401, 404]);
    t.api(
        Post,
        "/api/v1/sites/{id}/certificate/revoke",
        certificates::revoke,
    )
    .named(
        "revoke_site_certificate",
        "Revokes the site's certificate at the CA that issued it (its key leaked) and stops \
         serving it; with ACME on for the site, a new one is ordered at once",
    )
    .access(Access::Owner)
    .returns::<SiteCertificate>(200)
    .errors(&[400, 401, 404, 409, 502, 503]);
}

pub(super) fn pages(t: &mut Table) {
    t.page(
        Post,
        "/sites/{id}/certificate",
        crate::pages::certificates::upload,
    )
    .named("page_sites_certificate", "")
    .access(Access::Owner);
    t.page(
        Post,
        "/sites/{id}/certificate/remove",
        crate::pages::certificates::remove,
    )
    .named("page_sites_certificate_remove", "")
    .access(Access::Owner);
}
