//! How every alveole listener (the panel, the agents' listener, a node's ingress, the peer
//! listener) accepts and keeps connections, so that a hostile or careless client cannot hold
//! them all:
//!
//! - a cap on open connections, drawn also from one budget of file descriptors per process;
//!   near the cap, the connection idle the longest is closed to make room;
//! - a tighter cap per client address that counts only connections still sending their first
//!   request's head (a school behind one NAT address is many clients, not one);
//! - a time limit for a request's head, and one for a kept-alive connection left idle.
//!
//! A request being answered is never cut: long polls and the copy streams of moves run as
//! long as they need. See [`Guard`], [`serve_http1`] (hyper's connections) and [`serve_own`]
//! (a server's own, such as a node's ingress).

mod budget;
mod connection;
mod guard;
pub mod metrics;
#[cfg(feature = "siege")]
pub mod siege;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use budget::raise_open_files_limit;
pub use connection::{Answering, Session, Tracked, serve_http1, serve_own};
pub use guard::{Admitted, Guard, Stats, Ticket};

/// The bounds of one listener. The defaults suit a public ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once (also bounded by the process's file descriptors).
    pub max_connections: usize,
    /// Connections per client address that have not yet sent a whole request head.
    pub max_unfinished_per_client: usize,
    /// How long a client has to send a request's head, from its first byte (or from the
    /// connection's opening, TLS handshake included).
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_unfinished_per_client: 64,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// Which setting is out of range, if one is: every bound must let something through.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1");
        }
        if self.max_unfinished_per_client == 0 {
            return Err("max_unfinished_per_client must be at least 1");
        }
        if self.header_timeout.is_zero() {
            return Err("header_timeout must be longer than zero");
        }
        if self.idle_timeout.is_zero() {
            return Err("idle_timeout must be longer than zero");
        }
        Ok(())
    }
}
