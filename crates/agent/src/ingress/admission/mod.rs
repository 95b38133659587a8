//! Overload protection of one site, in the ingress (decision 0037): who is admitted, who
//! waits in line (and sees the waiting room), which class a visitor belongs to, and how many
//! requests the container is given at once.
//!
//! A visitor is their pass (`pass.rs`), signed with the site's key from the panel: the
//! line's order travels in the passes, so a site that moves keeps its visitors' places and
//! admissions without handing any state over. The room (`room.rs`) is pure state behind one
//! mutex per site; the gate (`gate.rs`) bounds the container's concurrent requests.

mod gate;
mod page;
mod pass;
pub mod pressure;
mod room;

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use alveole_model::{SiteAdmission, SiteId};
use tokio::sync::OwnedSemaphorePermit;

pub(crate) use page::Lang;
pub(crate) use pass::find_cookies;
use pass::{COOKIE, Pass, Signer};
use room::{ClassIx, Known, Outcome, Room, RoomLimits};

use super::metrics::AdmissionMetrics;
use super::pages::Page;

/// How long a class a site gave a visitor is kept in their cookie.
const COOKIE_SECONDS: u32 = 12 * 3600;

/// A request as admission sees it.
pub(crate) struct Visit<'a> {
    /// The request's Cookie fields, as sent.
    pub cookies: &'a [&'a [u8]],
    /// A page a browser navigates to (GET or HEAD asking for HTML), as opposed to an API
    /// call or an asset: only a page can show the waiting room.
    pub page: bool,
    pub path: &'a str,
    pub client: IpAddr,
    pub lang: Lang,
    pub host: &'a str,
    pub https: bool,
}

/// What admission decided for a request.
pub(crate) enum Verdict {
    /// On to the site. `visitor`: who, when counted (a priority class the site gives is
    /// bound to them); `set_cookie`: a new or renewed pass to send with the answer.
    Admit {
        visitor: Option<u64>,
        set_cookie: Option<String>,
    },
    /// The ingress answers (the waiting room, or 503).
    Answer(Page),
}

/// A site's admission: its policy, its passes' signer, its room and its gate.
#[derive(Debug)]
pub(crate) struct Admission {
    site: SiteId,
    spec: SiteAdmission,
    signer: Signer,
    room: Mutex<Room>,
    gate: gate::Gate,
    metrics: AdmissionMetrics,
    /// Whether visitors were waiting at the last request (the room's opening and closing
    /// are reported).
    open: AtomicBool,
    style: std::sync::Arc<str>,
}

/// When the waiting room of a site opened or closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomChange {
    pub site: SiteId,
    pub opened: bool,
    pub at: chrono::DateTime<chrono::Utc>,
    pub waiting: usize,
    pub active: usize,
}

fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

/// A new visitor's id: unique across nodes (48 random bits), and, for visitors who join in
/// the same millisecond on this node, in the order they came (a counter in the top 16 bits:
/// the line is ordered by join time, then id).
pub(crate) fn random_visitor() -> u64 {
    use ring::rand::SecureRandom;
    static ORDER: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let mut bytes = [0u8; 8];
    // The system's generator does not fail on Linux; a zero id would still be signed.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    let order = u64::from(ORDER.fetch_add(1, Ordering::Relaxed));
    order << 48 | u64::from_le_bytes(bytes) & 0xFFFF_FFFF_FFFF
}

impl Admission {
    pub(crate) fn new(
        site: SiteId,
        spec: SiteAdmission,
        metrics: AdmissionMetrics,
        style: std::sync::Arc<str>,
    ) -> Self {
        let mut shares = vec![
            100 - spec
                .classes
                .iter()
                .map(|c| u32::from(c.share_percent))
                .sum::<u32>()
                .min(100),
        ];
        shares.extend(spec.classes.iter().map(|c| u32::from(c.share_percent)));
        let limits = RoomLimits {
            active_visitors: spec.active_visitors,
            new_per_minute: spec.new_visitors_per_minute,
            active_ms: u64::from(spec.active_seconds) * 1000,
            refresh_ms: u64::from(spec.refresh_seconds) * 1000,
            shares,
        };
        Self {
            site,
            signer: Signer::new(&spec.key.0, site),
            room: Mutex::new(Room::new(limits, now_ms())),
            gate: gate::Gate::new(spec.concurrent_requests, gate::Timing::default()),
            spec,
            metrics,
            open: AtomicBool::new(false),
            style,
        }
    }

    pub(crate) fn spec(&self) -> &SiteAdmission {
        &self.spec
    }

    fn room(&self) -> std::sync::MutexGuard<'_, Room> {
        self.room
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn class_ix(&self, name: &str) -> ClassIx {
        self.spec
            .classes
            .iter()
            .position(|c| c.name == name)
            .map_or(0, |i| i + 1)
    }

    fn class_name(&self, class: ClassIx) -> &str {
        class
            .checked_sub(1)
            .and_then(|i| self.spec.classes.get(i))
            .map_or("", |c| c.name.as_str())
    }

    /// The class a newcomer's first request puts them in: the first rule that matches.
    fn class_of_new(&self, path: &str, client: IpAddr) -> ClassIx {
        self.spec
            .rules
            .iter()
            .find(|rule| {
                rule.path_prefix
                    .as_deref()
                    .is_some_and(|prefix| path.starts_with(prefix))
                    || rule.network.is_some_and(|net| net.contains(client))
            })
            .map_or(0, |rule| self.class_ix(&rule.class))
    }

    fn cookie(&self, pass: &Pass, https: bool) -> String {
        format!(
            "{COOKIE}={}; Path=/; Max-Age={COOKIE_SECONDS}; HttpOnly; SameSite=Lax{}",
            self.signer.encode(pass),
            if https { "; Secure" } else { "" }
        )
    }

    /// Decides for one request, with node pressure's `factor` (1.0: none).
    pub(crate) fn decide(&self, visit: &Visit<'_>, factor: f64) -> (Verdict, Option<RoomChange>) {
        let now = now_ms();
        // The first pass that verifies: a forged or stale one never shadows a good one.
        let pass = visit
            .cookies
            .iter()
            .flat_map(|field| find_cookies(field))
            .take(8)
            .find_map(|value| self.signer.decode(value));
        let known = match &pass {
            None => Known::Nobody,
            Some(p) if p.admitted => Known::Admitted {
                visitor: p.visitor,
                class: self.class_ix(&p.class),
                seen_ms: p.seen_ms,
            },
            Some(p) => Known::Waiting {
                visitor: p.visitor,
                class: self.class_ix(&p.class),
                joined_ms: p.joined_ms,
                seen_ms: p.seen_ms,
            },
        };
        // Made outside the lock (a system call), and only for a page: a newcomer's id.
        let newcomer = if visit.page { random_visitor() } else { 0 };
        let mut room = self.room();
        room.set_factor(factor);
        let admitted_pass =
            matches!(known, Known::Admitted { seen_ms, .. } if room.still_admitted(seen_ms, now));
        let verdict = if !visit.page && !admitted_pass {
            // Not a visitor's page: let through while nobody waits, else come back later.
            if room.is_open(now) {
                self.metrics.turned_away("not_a_page");
                Verdict::Answer(page::come_back(self.spec.refresh_seconds))
            } else {
                Verdict::Admit {
                    visitor: None,
                    set_cookie: None,
                }
            }
        } else {
            let class_of_new = self.class_of_new(visit.path, visit.client);
            let outcome = room.enter(known, class_of_new, now, newcomer);
            self.answer(outcome, pass.as_ref(), visit, now)
        };
        let change = self.note_room(&room);
        (verdict, change)
    }

    fn answer(
        &self,
        outcome: Outcome,
        pass: Option<&Pass>,
        visit: &Visit<'_>,
        now: u64,
    ) -> Verdict {
        match outcome {
            Outcome::Admitted {
                visitor,
                class,
                waited_ms,
            } => {
                let renew_after = (u64::from(self.spec.active_seconds) * 1000 / 4).min(60_000);
                let current = pass.is_some_and(|p| {
                    p.admitted && p.visitor == visitor && p.seen_ms + renew_after > now
                });
                if let Some(waited) = waited_ms {
                    self.metrics.waited(waited as f64 / 1000.0);
                }
                // Counted once per admission, not at each renewal of the pass.
                if !pass.is_some_and(|p| p.admitted && p.visitor == visitor) {
                    self.metrics.admitted();
                }
                let set_cookie = (!current).then(|| {
                    self.cookie(
                        &Pass {
                            visitor,
                            admitted: true,
                            joined_ms: pass.map_or(now, |p| p.joined_ms),
                            seen_ms: now,
                            class: self.class_name(class).to_owned(),
                        },
                        visit.https,
                    )
                });
                Verdict::Admit {
                    visitor: Some(visitor),
                    set_cookie,
                }
            }
            Outcome::Waiting {
                visitor,
                class,
                joined_ms,
                place,
                wait_ms,
            } => {
                self.metrics.turned_away("waiting_room");
                let mut page = page::waiting_room(
                    &page::Line {
                        host: visit.host,
                        place,
                        wait_seconds: wait_ms / 1000,
                        refresh_seconds: self.spec.refresh_seconds,
                    },
                    visit.lang,
                    &self.style,
                );
                let cookie = self.cookie(
                    &Pass {
                        visitor,
                        admitted: false,
                        joined_ms,
                        seen_ms: now,
                        class: self.class_name(class).to_owned(),
                    },
                    visit.https,
                );
                page.extra.push(("set-cookie", cookie));
                Verdict::Answer(page)
            }
            Outcome::Full => {
                self.metrics.turned_away("line_full");
                Verdict::Answer(page::come_back(self.spec.refresh_seconds))
            }
        }
    }

    /// Visitors waiting, and admitted and active, now.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let room = self.room();
        (room.waiting(), room.active())
    }

    /// Updates the gauges; says when the room opened or closed.
    fn note_room(&self, room: &Room) -> Option<RoomChange> {
        self.metrics.set_counts(room.waiting(), room.active());
        let open = room.waiting() > 0;
        (self.open.swap(open, Ordering::Relaxed) != open).then(|| RoomChange {
            site: self.site,
            opened: open,
            at: chrono::Utc::now(),
            waiting: room.waiting(),
            active: room.active(),
        })
    }

    /// A place in the container for an admitted request; `None`: the container does not
    /// keep up, answer 503.
    pub(crate) async fn enter_container(&self) -> Result<OwnedSemaphorePermit, Page> {
        match self.gate.enter().await {
            Some(place) => Ok(place),
            None => {
                self.metrics.turned_away("container_busy");
                Err(page::come_back(1))
            }
        }
    }

    /// The pass that binds `class` (a site's `Alveole-Priority`) to `visitor`, as a
    /// Set-Cookie value; `None` for a class the site does not have.
    pub(crate) fn priority_cookie(
        &self,
        visitor: u64,
        class: &[u8],
        https: bool,
    ) -> Option<String> {
        let class = std::str::from_utf8(class).ok()?.trim();
        let ix = self.class_ix(class);
        if ix == 0 {
            return None;
        }
        let now = now_ms();
        Some(self.cookie(
            &Pass {
                visitor,
                admitted: true,
                joined_ms: now,
                seen_ms: now,
                class: class.to_owned(),
            },
            https,
        ))
    }
}
