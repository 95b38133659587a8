//! The `alveole` command: its definitions (here, so tests can compare them with the README)
//! and what each subcommand does.

pub mod agent;
pub mod audit;
pub mod bench;
mod bench_audit;
mod bench_harness;
mod bench_move;
mod bench_packets;
mod bench_routing;
mod bench_volume;
pub mod cli;
pub mod client;
pub mod local;
pub mod serve;

pub use cli::{Cli, Command};
