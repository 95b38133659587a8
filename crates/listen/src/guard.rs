//! The guard of one listener: which connections are open, in what phase, and whether the next
//! one may come in.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::Limits;
use crate::budget;
use crate::connection::{ConnState, Phase, Tracked};

/// A listener's connections and bounds. Shared as `Arc<Guard>` by its accept loop and its
/// connections.
#[derive(Debug)]
pub struct Guard {
    name: &'static str,
    limits: Limits,
    epoch: Instant,
    table: Mutex<Table>,
    /// Woken when a connection closes.
    drained: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Arc<ConnState>>,
    /// Connections still sending their first request's head, per client address.
    unfinished: HashMap<IpAddr, usize>,
    /// Connections asked to close and not closed yet.
    closing: usize,
    refused: u64,
    timed_out: u64,
    evicted: u64,
}

impl Table {
    /// Connections open and not on their way out.
    fn live(&self) -> usize {
        self.open.len().saturating_sub(self.closing)
    }
}

/// What a guard holds now, and what it has refused since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub open: usize,
    pub unfinished: usize,
    pub idle: usize,
    pub refused: u64,
    pub timed_out: u64,
    pub evicted: u64,
}

/// A connection the guard let in: its stream (watched for the first bytes of each request)
/// and its place in the guard, given back when this is dropped.
#[derive(Debug)]
pub struct Admitted {
    pub stream: Tracked<TcpStream>,
    pub ticket: Ticket,
}

/// A connection's place in its guard; [`serve_http1`](crate::serve_http1) takes it.
#[derive(Debug)]
pub struct Ticket {
    pub(crate) guard: Arc<Guard>,
    pub(crate) state: Arc<ConnState>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.guard.remove(&self.state);
    }
}

impl Guard {
    /// A guard for the listener named `name` (in logs). Limits are checked with
    /// [`Limits::check`] by whoever reads them from the user.
    pub fn new(name: &'static str, limits: Limits) -> Arc<Self> {
        tracing::debug!(
            listener = name,
            max_connections = limits.max_connections,
            process_budget = budget::process_budget(),
            "listener bounds"
        );
        let guard = Arc::new(Self {
            name,
            limits,
            epoch: Instant::now(),
            table: Mutex::default(),
            drained: tokio::sync::Notify::new(),
        });
        crate::metrics::register(Arc::downgrade(&guard));
        guard
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Milliseconds since the guard started: connections' phase times, in one atomic word.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn instant_at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next connection the bounds admit. Connections refused are closed at once; errors
    /// of `accept` (out of descriptors, a client gone before it was accepted) are logged and
    /// never end the loop.
    pub async fn accept(self: &Arc<Self>, listener: &TcpListener) -> (Admitted, SocketAddr) {
        loop {
            let (stream, client) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors: make room, and give the kernel a moment rather
                    // than spin on the same error.
                    tracing::warn!(listener = self.name, %error, "cannot accept a connection");
                    let _ = self.evict_oldest(&mut self.table(), Phase::Idle);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            if let Some(admitted) = self.admit(stream, client.ip()) {
                return (admitted, client);
            }
        }
    }

    /// Lets `stream` in, or closes it (by dropping it) when a bound says no.
    fn admit(self: &Arc<Self>, stream: TcpStream, client: IpAddr) -> Option<Admitted> {
        let mut table = self.table();
        let unfinished = table.unfinished.get(&client).copied().unwrap_or(0);
        if unfinished >= self.limits.max_unfinished_per_client {
            table.refused += 1;
            tracing::debug!(listener = self.name, %client, "too many unfinished connections from one address");
            return None;
        }
        let near = self.limits.max_connections - self.limits.max_connections / 10;
        let mut made_room = false;
        if table.live() >= near || budget::exhausted() {
            made_room = self.evict_oldest(&mut table, Phase::Idle);
        }
        if !made_room && (table.live() >= self.limits.max_connections || budget::exhausted()) {
            // Still full of connections that are all busy or unfinished: the oldest half
            // head goes (under a slowloris attack it is an attacker's, since a client's
            // head takes a round trip) rather than the newcomer.
            made_room = self.evict_oldest(&mut table, Phase::Unfinished);
        }
        // A connection asked to make room closes within moments: the newcomer may take its
        // descriptor ahead of time (the budget keeps a reserve for that).
        if table.live() >= self.limits.max_connections || !budget::take(made_room) {
            table.refused += 1;
            tracing::debug!(listener = self.name, %client, "connection refused: at the cap");
            return None;
        }
        let _ = stream.set_nodelay(true);
        let id = table.next_id;
        table.next_id += 1;
        let state = Arc::new(ConnState::new(id, client, self.now_ms()));
        table.open.insert(id, state.clone());
        *table.unfinished.entry(client).or_default() += 1;
        drop(table);
        Some(Admitted {
            stream: Tracked::new(stream, state.clone(), self.clone()),
            ticket: Ticket {
                guard: self.clone(),
                state,
            },
        })
    }

    /// Asks the connection in `phase` the longest to close (an idle one once it is idle, an
    /// unfinished one at once); whether there was one.
    fn evict_oldest(&self, table: &mut Table, phase: Phase) -> bool {
        let oldest = table
            .open
            .values()
            .filter(|c| c.phase() == phase && !c.is_closing())
            .min_by_key(|c| (c.since_ms(), c.id));
        let Some(connection) = oldest else {
            return false;
        };
        connection.ask_to_close();
        table.closing += 1;
        table.evicted += 1;
        true
    }

    /// The connection's first request head is complete: it no longer counts against its
    /// client's unfinished ones.
    pub(crate) fn first_head_done(&self, client: IpAddr) {
        let mut table = self.table();
        Self::forget_unfinished(&mut table, client);
    }

    fn forget_unfinished(table: &mut Table, client: IpAddr) {
        if let Some(count) = table.unfinished.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                table.unfinished.remove(&client);
            }
        }
    }

    pub(crate) fn record_timeout(&self) {
        self.table().timed_out += 1;
    }

    fn remove(&self, state: &ConnState) {
        let mut table = self.table();
        if table.open.remove(&state.id).is_some() {
            budget::give_back();
            if !state.first_head_seen() {
                Self::forget_unfinished(&mut table, state.client);
            }
            if state.is_closing() {
                table.closing = table.closing.saturating_sub(1);
            }
        }
        drop(table);
        self.drained.notify_waiters();
    }

    /// Asks every connection to close once it has answered what it is answering (the
    /// listener is stopping), and waits until they have, for at most `within`.
    pub async fn finish_all(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let table = self.table();
                if table.open.is_empty() {
                    return;
                }
                for connection in table.open.values() {
                    connection.ask_to_finish();
                }
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return;
            }
        }
    }

    pub fn stats(&self) -> Stats {
        let table = self.table();
        Stats {
            open: table.open.len(),
            unfinished: table.unfinished.values().sum(),
            idle: table
                .open
                .values()
                .filter(|c| c.phase() == Phase::Idle)
                .count(),
            refused: table.refused,
            timed_out: table.timed_out,
            evicted: table.evicted,
        }
    }
}
