//! Site moves and evacuations: API and pages.

use alveole_model::evacuation::{Evacuation, EvacuationPlan};
use alveole_model::{MoveOutcome, MoveProgress, SiteMove};

use super::{Access, Get, Post, Table};
use crate::api::evacuations;
use crate::api::site_moves::{self, MoveRequest};
use crate::pages;
use crate::service::evacuations::{ExitReadiness, PlanQuery};

pub(super) fn api(t: &mut Table) {
    t.api(Post, "/api/v1/sites/{id}/move", site_moves::start)
        .named(
            "move_site",
            "Moves a site to another node: its volume is copied while it serves, then it is \
             frozen for a last copy and switched; its old node forwards its requests for a while",
        )
        .takes::<MoveRequest>()
        .returns::<SiteMove>(202)
        .errors(&[400, 401, 403, 404, 409]);
    t.api(Get, "/api/v1/sites/{id}/moves", site_moves::of_site)
        .named(
            "list_site_moves",
            "A site's moves, newest first (its history), with each one's progress and freeze \
             window",
        )
        .access(Access::Read)
        .returns::<Vec<SiteMove>>(200)
        .errors(&[400, 401, 403, 404]);
    t.api(Get, "/api/v1/evacuation-plan", evacuations::plan)
        .named(
            "plan_evacuation",
            "Where every site of a node or a provider would go (only to nodes that can receive \
             now; the others are listed with why), how long moving them would take at the cost \
             learned from past moves, and whether a deadline holds (and if not, what would \
             make it)",
        )
        .access(Access::Read)
        .query(&[
            ("node_id", "the node to empty"),
            ("provider_id", "or every node of this provider"),
            ("deadline", "RFC 3339: by when"),
            ("parallelism", "moves at once, 1 to 32 (4 by default)"),
        ])
        .returns::<EvacuationPlan>(200)
        .errors(&[400, 401, 403, 404]);
    t.api(Post, "/api/v1/evacuations", evacuations::start)
        .named(
            "start_evacuation",
            "Plans an evacuation (as the plan route does) and runs it as a durable job: moves \
             in the plan's order, `parallelism` at a time, even when the deadline cannot hold; \
             a failed site is tried again three times and does not stop the others. It ends \
             `done`, or `incomplete` naming each site left and why",
        )
        .takes::<PlanQuery>()
        .returns::<Evacuation>(202)
        .errors(&[400, 401, 403, 404]);
    t.api(Post, "/api/v1/recoveries", evacuations::recover)
        .named(
            "start_recovery",
            "This node (`node_id`) or this provider (`provider_id`) is lost: fences its nodes \
             (they are given nothing to run; their reports and renewals are refused), places \
             each of their sites elsewhere as an evacuation would, and restores each there from \
             its newest backup outside the lost nodes, `parallelism` at a time, as a durable \
             job (followed at `/api/v1/evacuations/{id}`). Each site's addresses fail over to \
             its new node; each site's item says what it lost (`data_loss_seconds`). A site \
             without a copy outside the lost nodes is named in `unplaced`",
        )
        .takes::<PlanQuery>()
        .returns::<Evacuation>(202)
        .errors(&[400, 401, 403, 404]);
    t.api(Get, "/api/v1/exit-readiness", evacuations::readiness)
        .named(
            "get_exit_readiness",
            "For each provider: how long leaving it would take right now, against the co-op's \
             notice period, and what stands in the way",
        )
        .access(Access::Read)
        .returns::<ExitReadiness>(200)
        .errors(&[401, 403]);
    t.api(Get, "/api/v1/evacuations", evacuations::list)
        .named(
            "list_evacuations",
            "Evacuations, newest first, each site with where its move stands, those under way \
             with their expected end",
        )
        .access(Access::Read)
        .returns::<Vec<Evacuation>>(200)
        .errors(&[401, 403]);
    t.api(Get, "/api/v1/evacuations/{id}", evacuations::get)
        .named(
            "get_evacuation",
            "One evacuation, each site with where its move stands",
        )
        .access(Access::Read)
        .returns::<Evacuation>(200)
        .errors(&[400, 401, 403, 404]);
    t.api(Post, "/api/v1/evacuations/{id}/pause", evacuations::pause)
        .named(
            "pause_evacuation",
            "Pauses an evacuation: no new move starts; those under way finish",
        )
        .returns::<Evacuation>(200)
        .errors(&[400, 401, 403, 404, 409]);
    t.api(Post, "/api/v1/evacuations/{id}/resume", evacuations::resume)
        .named("resume_evacuation", "Resumes a paused evacuation")
        .returns::<Evacuation>(200)
        .errors(&[400, 401, 403, 404, 409]);
    t.api(Post, "/api/v1/evacuations/{id}/cancel", evacuations::cancel)
        .named(
            "cancel_evacuation",
            "Cancels an evacuation: the sites not started stay; moves under way finish",
        )
        .returns::<Evacuation>(200)
        .errors(&[400, 401, 403, 404, 409]);
    t.api(Get, "/api/v1/site-moves", site_moves::list)
        .named("list_all_site_moves", "Every site move, newest first")
        .access(Access::Read)
        .returns::<Vec<SiteMove>>(200)
        .errors(&[401, 403]);
    t.api(Get, "/api/v1/site-moves/{id}", site_moves::get)
        .named("get_site_move", "One site move, with its progress")
        .access(Access::Read)
        .returns::<SiteMove>(200)
        .errors(&[400, 401, 403, 404]);
    t.api(Post, "/api/v1/site-moves/{id}/cancel", site_moves::cancel)
        .named(
            "cancel_site_move",
            "Cancels a move before its switch: the site stays on its node",
        )
        .returns::<SiteMove>(200)
        .errors(&[400, 401, 403, 404, 409]);
    t.api(Post, "/api/v1/site-moves/{id}/finish", site_moves::finish)
        .named(
            "finish_site_move",
            "Ends a switched move's forwarding early: the old node stops forwarding and drops \
             its copy",
        )
        .returns::<SiteMove>(200)
        .errors(&[400, 401, 403, 404, 409]);
    t.api(
        Post,
        "/api/v1/agent/site-moves/{id}/progress",
        site_moves::agent_progress,
    )
    .named(
        "agent_site_move_progress",
        "The source node's progress on a move (agents only)",
    )
    .access(Access::Agent)
    .takes::<MoveProgress>()
    .status(204)
    .errors(&[400, 401, 403, 404]);
    t.api(
        Post,
        "/api/v1/agent/site-moves/{id}/switch",
        site_moves::agent_switch,
    )
    .named(
        "agent_site_move_switch",
        "The source asks for the switch: the site becomes the target's (agents only)",
    )
    .access(Access::Agent)
    .takes::<MoveOutcome>()
    .returns::<SiteMove>(200)
    .errors(&[400, 401, 403, 404, 409]);
    t.api(
        Post,
        "/api/v1/agent/site-moves/{id}/fail",
        site_moves::agent_fail,
    )
    .named(
        "agent_site_move_fail",
        "The source rolled back: the site stays its (agents only)",
    )
    .access(Access::Agent)
    .takes::<MoveOutcome>()
    .returns::<SiteMove>(200)
    .errors(&[400, 401, 403, 404, 409]);
}

pub(super) fn pages(t: &mut Table) {
    t.page(Get, "/evacuations", pages::evacuations::page)
        .named("page_evacuations", "")
        .access(Access::Read);
    t.page(Post, "/evacuations/start", pages::evacuations::start)
        .named("page_evacuation_start", "");
    t.page(Post, "/evacuations/recover", pages::evacuations::recover)
        .named("page_recovery_start", "");
    t.page(Post, "/evacuations/{id}/{verb}", pages::evacuations::change)
        .named("page_evacuation_change", "");
    t.page(Post, "/sites/{id}/move", pages::site_moves::move_site)
        .named("page_site_move", "");
    t.page(Post, "/site-moves/{id}/cancel", pages::site_moves::cancel)
        .named("page_site_move_cancel", "");
    t.page(Post, "/site-moves/{id}/finish", pages::site_moves::finish)
        .named("page_site_move_finish", "");
}
