//! The process's budget of connections, from its limit on open files: every guard of the
//! process draws from it, so that together they never run out of descriptors.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::process::{Resource, getrlimit, setrlimit};

/// Descriptors kept for everything that is not a connection (files, the database, Docker).
const RESERVED: usize = 128;
/// A proxied connection holds two descriptors: the client's and the upstream's.
const PER_CONNECTION: usize = 2;

static OPEN: AtomicUsize = AtomicUsize::new(0);
static BUDGET: OnceLock<usize> = OnceLock::new();

/// Raises the soft limit on open files to the hard limit (systemd and Docker give a low soft
/// limit and a high hard one). Call it before the first guard; returns the limit now in force.
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current.is_some_and(|soft| soft < hard)
    {
        limit.current = Some(hard);
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(%error, "cannot raise the limit on open files");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Connections the whole process may hold at once.
pub fn process_budget() -> usize {
    *BUDGET.get_or_init(|| {
        let soft = getrlimit(Resource::Nofile).current.unwrap_or(1 << 20);
        let soft = usize::try_from(soft).unwrap_or(usize::MAX);
        (soft.saturating_sub(RESERVED) / PER_CONNECTION).max(1)
    })
}

/// Takes one connection from the budget, or says there is none left; `beyond` takes it even
/// then (another connection was just asked to close and will give its own back).
pub(crate) fn take(beyond: bool) -> bool {
    let budget = process_budget();
    OPEN.fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
        (open < budget || beyond).then_some(open + 1)
    })
    .is_ok()
}

pub(crate) fn give_back() {
    OPEN.fetch_sub(1, Ordering::AcqRel);
}

pub(crate) fn exhausted() -> bool {
    OPEN.load(Ordering::Acquire) >= process_budget()
}
