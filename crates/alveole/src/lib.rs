//! The `alveole` command: its definitions (here, so tests can compare them with the README)
//! and what each subcommand does.

pub mod agent;
pub mod audit;
mod backups;
mod certificates;
pub mod cli;
pub mod cli_acme;
pub mod cli_agent;
pub mod client;
mod databases;
pub mod evacuate;
pub mod local;
pub mod serve;

pub use cli::{Cli, Command};
