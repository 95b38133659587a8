//! alveole's audit record, independent of where it is kept: the canonical bytes of an event
//! (RFC 8785 JSON), the hash chain linking events, signed checkpoints of the chain's head,
//! verification of a chain read from the database or from an export file, and the export
//! formats for the board (JSON Lines, CSV).
//!
//! It has no database and no network: the store appends through [`chain::seal`], and
//! `alveole audit verify` checks an export with nothing else.

pub mod canonical;
pub mod chain;
pub mod checkpoint;
pub mod export;
pub mod report;

pub use chain::{ChainBreak, ChainHead, EventFields, Link, Sealed, seal, verify};
pub use checkpoint::{AuditKey, Checkpoint, CheckpointError, SigningKey};
