//! The end-to-end suite, one binary grouped by capability: each module drives the real server
//! (both databases), and the `docker`, `routing`, `failover` and `input_filter` modules also the
//! machine's Docker engine and network namespaces (run one at a time, see `.config/nextest.toml`).
//!
//! One binary, not one per file: linking each test binary against the whole workspace cost more
//! than running the tests.

// Test code: a failed expectation is the test failing, with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod addresses;
mod admission;
mod agents;
mod audit;
mod authorization;
mod backups;
mod browser;
mod certificates;
mod databases;
mod docker;
mod drills;
mod evacuations;
mod failover;
mod identity;
mod input;
mod input_filter;
mod listeners;
mod moves;
mod oidc;
mod records;
mod routes;
mod routing;
mod secrets;
mod series;
mod vault;
