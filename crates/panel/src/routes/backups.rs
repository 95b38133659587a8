//! Backups: targets (a resource, admins'), a site's backups, restores and drills (its
//! owner's).

use alveole_model::BackupTarget;
use alveole_model::backup::{Drill, Restore, RestoreInput};

use super::{Access, Get, Post, Table};
use crate::api::backups::{self, BackupRequested};
use crate::api::drills;
use crate::service::backups::SiteBackups;

pub(super) fn api(t: &mut Table) {
    super::records::resource_api::<BackupTarget>(t, Access::Read, Access::Admin);
    t.api(Get, "/api/v1/sites/{id}/backups", backups::of_site)
        .named(
            "get_site_backups",
            "A site's backups: each target of its policy with its newest snapshot, its \
             data-loss window (the age of its newest snapshot that passed a drill or a check), \
             its restore time (its last drill's, from the start of the restore to the first \
             good answer), its alerts, its latest backups, restores and drills",
        )
        .access(Access::Owner)
        .returns::<SiteBackups>(200)
        .errors(&[400, 401, 404]);
    t.api(Post, "/api/v1/sites/{id}/backups", backups::back_up_now)
        .named(
            "back_up_site",
            "Asks the site's node to back it up now, to each target of its policy",
        )
        .access(Access::Owner)
        .returns::<BackupRequested>(202)
        .errors(&[400, 401, 404, 409]);
    t.api(Post, "/api/v1/sites/{id}/restores", backups::restore)
        .named(
            "restore_site",
            "Restores a snapshot of the site (the newest by default) from one of its targets: \
             whole (the site is stopped, and its volume then holds exactly the snapshot) or \
             some files and folders (over what is there), into the site itself or into another \
             site of yours, on whatever node and provider that site is",
        )
        .access(Access::Owner)
        .takes::<RestoreInput>()
        .returns::<Restore>(202)
        .errors(&[400, 401, 404, 409]);
    t.api(Get, "/api/v1/restores/{id}", backups::get_restore)
        .named(
            "get_restore",
            "A restore: its state and progress (bytes restored of the snapshot's total)",
        )
        .access(Access::Owner)
        .returns::<Restore>(200)
        .errors(&[400, 401, 404]);
    t.api(Get, "/api/v1/sites/{id}/drills", drills::of_site)
        .named(
            "list_site_drills",
            "A site's latest restore drills, newest first",
        )
        .access(Access::Owner)
        .returns::<Vec<Drill>>(200)
        .errors(&[400, 401, 404]);
    t.api(Post, "/api/v1/sites/{id}/drills", drills::start)
        .named(
            "drill_site",
            "Drills the site's backups now: its newest snapshot (at the target drilled least \
             lately) restored into a scratch container on a node of another provider, compared \
             with the snapshot, started and probed on its health path, its drill hook run, then \
             removed. Answers at once; without a node that can run it, the drill is recorded \
             as failed, with why",
        )
        .access(Access::Owner)
        .returns::<Drill>(202)
        .errors(&[400, 401, 404, 409]);
    t.api(Get, "/api/v1/drills/{id}", drills::get)
        .named(
            "get_drill",
            "A drill: its state, its phase, what it restored and compared, its restore time",
        )
        .access(Access::Owner)
        .returns::<Drill>(200)
        .errors(&[400, 401, 404]);
}

pub(super) fn pages(t: &mut Table) {
    super::records::resource_pages::<BackupTarget>(t, Access::Read, Access::Admin);
    t.page(
        Post,
        "/sites/{id}/backup",
        crate::pages::backups::back_up_now,
    )
    .named("page_sites_backup", "")
    .access(Access::Owner);
    t.page(Post, "/sites/{id}/restore", crate::pages::backups::restore)
        .named("page_sites_restore", "")
        .access(Access::Owner);
    t.page(Post, "/sites/{id}/drill", crate::pages::backups::drill_now)
        .named("page_sites_drill", "")
        .access(Access::Owner);
}
