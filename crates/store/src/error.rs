//! The store's one error type, and how database constraint violations become client errors.

use alveole_model::{CapacityError, FieldError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} not found")]
    NotFound { kind: &'static str },
    /// Another writer changed the resource since the client read it.
    #[error("the {kind} was changed by someone else (version {actual}, you sent {expected})")]
    VersionMismatch {
        kind: &'static str,
        expected: i64,
        actual: i64,
    },
    /// A uniqueness rule or a reference would break; `errors` say which field.
    #[error("conflict: {message}")]
    Conflict {
        message: String,
        errors: Vec<FieldError>,
    },
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    /// A stored value no longer passes validation: someone edited the database by hand.
    #[error("stored {kind} {id} is invalid: {reason}")]
    Corrupt {
        kind: &'static str,
        id: String,
        reason: String,
    },
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("database migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Unique constraints by their name (PostgreSQL) and by `table.column` (how SQLite names
/// them in its messages), with the field and message a client should see.
const UNIQUE_CONSTRAINTS: &[(&str, &str, &str, &str)] = &[
    (
        "providers_name_key",
        "providers.name",
        "name",
        "a provider with this name already exists",
    ),
    (
        "backup_targets_name_key",
        "backup_targets.name",
        "name",
        "a backup target with this name already exists",
    ),
    (
        "nodes_name_key",
        "nodes.name",
        "name",
        "a node with this name already exists",
    ),
    (
        "members_email_key",
        "members.email",
        "email",
        "a member with this e-mail already exists",
    ),
    (
        "hostnames_name_key",
        "hostnames.name",
        "primary_domain",
        "this host name is already used by a site",
    ),
    (
        "site_moves_one_copying",
        "site_moves.site_id",
        "to_node",
        "the site is already moving: let its move finish or cancel it",
    ),
];

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        let Some(db) = error.as_database_error() else {
            return StoreError::Database(error);
        };
        match db.kind() {
            sqlx::error::ErrorKind::UniqueViolation => {
                let message = db.message();
                let sqlite_name = message
                    .strip_prefix("UNIQUE constraint failed: ")
                    .unwrap_or("");
                let known = UNIQUE_CONSTRAINTS.iter().find(|(pg, sqlite, _, _)| {
                    db.constraint() == Some(*pg) || sqlite_name == *sqlite
                });
                match known {
                    Some((_, _, field, message)) => StoreError::Conflict {
                        message: (*message).to_owned(),
                        errors: vec![FieldError::new(*field, "conflict.unique", *message)],
                    },
                    None => StoreError::Conflict {
                        message: "a unique value is already taken".into(),
                        errors: vec![],
                    },
                }
            }
            sqlx::error::ErrorKind::ForeignKeyViolation => StoreError::Conflict {
                message: "a referenced resource does not exist or is still in use".into(),
                errors: vec![],
            },
            _ => StoreError::Database(error),
        }
    }
}
