//! Signed checkpoints: the panel's Ed25519 signature over the chain's length and head hash at
//! a moment. Kept outside the panel (downloaded, sent to a webhook, printed in the general
//! assembly's report), a checkpoint lets anyone later prove that the first `length` events
//! are still the ones that were there: a rewrite or a truncation no longer matches it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, Utc};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::chain::{ChainHead, hash_of};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read or write the audit signing key {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an audit signing key (base64 of an Ed25519 PKCS#8 document)")]
    NotAKey { path: PathBuf },
    #[error("no Ed25519 key could be made")]
    Generate,
    #[error("the checkpoint is signed with key {0}, which is not among the published keys")]
    UnknownKey(String),
    #[error("the checkpoint's signature does not verify with key {0}")]
    BadSignature(String),
}

/// A public key that signs checkpoints, as published (`GET /api/v1/audit/keys`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditKey {
    /// The first 16 hex digits of the SHA-256 of the public key.
    pub key_id: String,
    /// Always `ed25519`.
    pub algorithm: String,
    /// The raw 32-byte public key, in base64.
    pub public_key: String,
}

/// The chain's length and head, signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Checkpoint {
    pub length: u64,
    /// Hash of event `length`; `None` for the empty chain.
    pub head: Option<String>,
    pub at: DateTime<Utc>,
    pub key_id: String,
    /// Ed25519 signature of [`Checkpoint::message`], in base64.
    pub signature: String,
}

impl Checkpoint {
    /// The signed bytes: RFC 8785 JSON of what the checkpoint asserts.
    pub fn message(&self) -> String {
        crate::canonical::to_string(&json!({
            "type": "alveole-audit-checkpoint",
            "length": self.length,
            "head": self.head,
            "at": self.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "key_id": self.key_id,
        }))
    }

    /// Checks the signature with the published key it names.
    pub fn verify(&self, keys: &[AuditKey]) -> Result<(), CheckpointError> {
        let key = keys
            .iter()
            .find(|k| k.key_id == self.key_id && k.algorithm == "ed25519")
            .ok_or_else(|| CheckpointError::UnknownKey(self.key_id.clone()))?;
        let bad = || CheckpointError::BadSignature(self.key_id.clone());
        let public = BASE64.decode(&key.public_key).map_err(|_| bad())?;
        if key_id_of(&public) != key.key_id {
            return Err(bad());
        }
        let signature = BASE64.decode(&self.signature).map_err(|_| bad())?;
        UnparsedPublicKey::new(&ED25519, public)
            .verify(self.message().as_bytes(), &signature)
            .map_err(|_| bad())
    }

    pub fn chain_head(&self) -> ChainHead {
        ChainHead {
            length: self.length,
            hash: self.head.clone(),
        }
    }
}

/// The key id: 16 hex digits of SHA-256 over the public key's bytes.
fn key_id_of(public_key: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The panel's signing key, kept in a file of its own (mode 0600).
pub struct SigningKey {
    pair: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The key in `path`, made there first if there is none.
    pub fn load_or_create(path: &Path) -> Result<Self, CheckpointError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_file_text(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(source) => Err(CheckpointError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// A new key in `path`, replacing the one there (rotation). The old file is kept beside it
    /// as `<path>.<old key id>` so nothing is lost by mistake; its public key stays published.
    pub fn rotate(path: &Path) -> Result<Self, CheckpointError> {
        if let Ok(old) = Self::load_or_create(path) {
            let kept = path.with_extension(format!("retired-{}", old.key_id));
            std::fs::rename(path, &kept)
                .map_err(|source| CheckpointError::Io { path: kept, source })?;
        }
        Self::create(path)
    }

    fn create(path: &Path) -> Result<Self, CheckpointError> {
        let rng = ring::rand::SystemRandom::new();
        let document =
            Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| CheckpointError::Generate)?;
        let text = BASE64.encode(document.as_ref());
        let io = |source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        Self::from_file_text(path, &text)
    }

    fn from_file_text(path: &Path, text: &str) -> Result<Self, CheckpointError> {
        let not_a_key = || CheckpointError::NotAKey {
            path: path.to_owned(),
        };
        let document = BASE64.decode(text.trim()).map_err(|_| not_a_key())?;
        let pair = Ed25519KeyPair::from_pkcs8(&document).map_err(|_| not_a_key())?;
        let key_id = key_id_of(pair.public_key().as_ref());
        Ok(Self { pair, key_id })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public(&self) -> AuditKey {
        AuditKey {
            key_id: self.key_id.clone(),
            algorithm: "ed25519".into(),
            public_key: BASE64.encode(self.pair.public_key().as_ref()),
        }
    }

    /// Signs the chain's `head` as of `at`.
    pub fn sign(&self, head: &ChainHead, at: DateTime<Utc>) -> Checkpoint {
        // Microseconds, as the message prints them, so the value reads back as signed.
        let at = DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at);
        let mut checkpoint = Checkpoint {
            length: head.length,
            head: head.hash.clone(),
            at,
            key_id: self.key_id.clone(),
            signature: String::new(),
        };
        checkpoint.signature =
            BASE64.encode(self.pair.sign(checkpoint.message().as_bytes()).as_ref());
        checkpoint
    }
}

/// A checkpoint's own digest, to name it (for example in a report).
pub fn checkpoint_digest(checkpoint: &Checkpoint) -> String {
    hash_of(&checkpoint.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_with_its_key_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing.key");
        let key = SigningKey::load_or_create(&path).unwrap();
        let again = SigningKey::load_or_create(&path).unwrap();
        assert_eq!(key.key_id(), again.key_id(), "the key is kept");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);

        let head = ChainHead {
            length: 7,
            hash: Some("ab".repeat(32)),
        };
        let checkpoint = key.sign(&head, Utc::now());
        let keys = [key.public()];
        checkpoint.verify(&keys).unwrap();
        let text = serde_json::to_string(&checkpoint).unwrap();
        let read: Checkpoint = serde_json::from_str(&text).unwrap();
        read.verify(&keys).unwrap();

        let mut longer = checkpoint.clone();
        longer.length = 8;
        assert!(matches!(
            longer.verify(&keys),
            Err(CheckpointError::BadSignature(_))
        ));
        let other = SigningKey::load_or_create(&dir.path().join("other/other.key")).unwrap();
        assert!(matches!(
            checkpoint.verify(&[other.public()]),
            Err(CheckpointError::UnknownKey(_))
        ));
        // A published key whose id does not match its bytes is not trusted.
        let mut forged = other.public();
        forged.key_id = key.key_id().to_owned();
        assert!(checkpoint.verify(&[forged]).is_err());

        // Rotation: a new key signs; the old checkpoint still verifies with the old public key.
        let rotated = SigningKey::rotate(&path).unwrap();
        assert_ne!(rotated.key_id(), key.key_id());
        checkpoint
            .verify(&[rotated.public(), key.public()])
            .unwrap();
    }
}
