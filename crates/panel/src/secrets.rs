//! Secrets at rest: every secret the panel keeps (sites' secret variables today; backup
//! repository keys and certificate keys next) is stored sealed with the panel's secrets key,
//! a file outside the database (`--secrets-key-file`, mode 0600). A dump or a backup of the
//! database holds no secret in clear.
//!
//! Sealing is authenticated encryption (ChaCha20-Poly1305, ring), a fresh random nonce each
//! time: `alveole:sealed:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`. The key file
//! holds one key per line, the current one first; rotation adds a key in front, reseals
//! everything, then drops the old one, so that a rotation cut short loses nothing.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64;
use ring::aead::{CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// How every sealed value begins.
pub const SEALED_PREFIX: &str = "alveole:sealed:v1:";
const LINE: &str = "alveole-secrets-key-v1 ";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} holds no secrets key (lines `alveole-secrets-key-v1 <64 hex digits>`)")]
    NotAKeyFile(PathBuf),
    #[error("a secret is sealed with key {0}, which the secrets key file does not hold")]
    UnknownKey(String),
    #[error("a sealed secret does not open with its key: altered, or not alveole's")]
    Corrupt,
    #[error("the system's random number generator failed")]
    Random,
}

struct Key {
    id: String,
    key: LessSafeKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

impl Key {
    fn from_bytes(bytes: &[u8; 32]) -> Result<Self, SecretsError> {
        let unbound =
            UnboundKey::new(&CHACHA20_POLY1305, bytes).map_err(|_| SecretsError::Random)?;
        let id = Sha256::digest(bytes)
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            id,
            key: LessSafeKey::new(unbound),
        })
    }

    fn generate() -> Result<([u8; 32], Self), SecretsError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SecretsError::Random)?;
        let key = Self::from_bytes(&bytes)?;
        Ok((bytes, key))
    }
}

/// The panel's secrets keys: the current one seals, any of them opens.
#[derive(Debug)]
pub struct Keyring {
    /// Where the keys live; `None` for a keyring that lives in memory only (tests).
    path: Option<PathBuf>,
    keys: RwLock<Vec<Key>>,
    /// When the file was last read: a rotation by another process changes it.
    read_at: RwLock<Option<std::time::SystemTime>>,
}

impl Keyring {
    /// The keys in `path`, made (one new key, mode 0600) when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretsError> {
        let keys = match std::fs::read_to_string(path) {
            Ok(text) => parse(path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (bytes, key) = Key::generate()?;
                write_atomically(path, &[bytes])?;
                vec![key]
            }
            Err(source) => {
                return Err(SecretsError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Ok(Self {
            path: Some(path.to_owned()),
            keys: RwLock::new(keys),
            read_at: RwLock::new(modified(path)),
        })
    }

    /// A keyring of one random key kept in memory only: for tests, and for panels whose
    /// database lives no longer than the process.
    pub fn ephemeral() -> Self {
        let keys = Key::generate()
            .map(|(_, key)| vec![key])
            .unwrap_or_default();
        Self {
            path: None,
            keys: RwLock::new(keys),
            read_at: RwLock::new(None),
        }
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, Vec<Key>> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn keys_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Key>> {
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current key's id.
    pub fn current_id(&self) -> Option<String> {
        self.keys().first().map(|key| key.id.clone())
    }

    /// `plain`, sealed with the current key (read again from the file if a rotation changed
    /// it meanwhile).
    pub fn seal(&self, plain: &str) -> Result<String, SecretsError> {
        if let Some(path) = &self.path
            && modified(path)
                != *self
                    .read_at
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            self.reload();
        }
        let keys = self.keys();
        let key = keys.first().ok_or(SecretsError::Random)?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SecretsError::Random)?;
        let mut sealed = plain.as_bytes().to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::empty(),
                &mut sealed,
            )
            .map_err(|_| SecretsError::Corrupt)?;
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        Ok(format!(
            "{SEALED_PREFIX}{}:{}",
            key.id,
            BASE64.encode(bytes)
        ))
    }

    /// Whether `text` is a secret sealed with one of these keys.
    pub fn is_sealed(&self, text: &str) -> bool {
        text.starts_with(SEALED_PREFIX) && self.open(text).is_ok()
    }

    /// The value sealed in `text`. A key this keyring does not hold is looked for again in
    /// the key file once (a rotation made while the panel runs).
    pub fn open(&self, text: &str) -> Result<String, SecretsError> {
        let rest = text
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SecretsError::Corrupt)?;
        let (id, sealed) = rest.split_once(':').ok_or(SecretsError::Corrupt)?;
        if !self.keys().iter().any(|key| key.id == id) {
            self.reload();
        }
        let keys = self.keys();
        let key = keys
            .iter()
            .find(|key| key.id == id)
            .ok_or_else(|| SecretsError::UnknownKey(id.to_owned()))?;
        let bytes = BASE64.decode(sealed).map_err(|_| SecretsError::Corrupt)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretsError::Corrupt);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretsError::Corrupt)?;
        let mut buffer = ciphertext.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, ring::aead::Aad::empty(), &mut buffer)
            .map_err(|_| SecretsError::Corrupt)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretsError::Corrupt)
    }

    /// The file as this process just wrote it: nothing to read again.
    fn note_read(&self) {
        if let Some(path) = &self.path {
            *self
                .read_at
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = modified(path);
        }
    }

    fn reload(&self) {
        let Some(path) = &self.path else { return };
        match read_key_bytes(path).and_then(|bytes| bytes.iter().map(Key::from_bytes).collect()) {
            Ok(keys) => {
                *self.keys_mut() = keys;
                self.note_read();
            }
            Err(error) => tracing::warn!(%error, "cannot reload the secrets key file"),
        }
    }

    /// Rotation, first step: a new key in front of the old ones (in the file too). Values
    /// sealed with the old keys still open; new ones use the new key.
    pub fn add_current(&self) -> Result<String, SecretsError> {
        let (bytes, key) = Key::generate()?;
        let id = key.id.clone();
        if let Some(path) = &self.path {
            let mut all = vec![bytes];
            all.extend(read_key_bytes(path)?);
            write_atomically(path, &all)?;
        }
        self.keys_mut().insert(0, key);
        self.note_read();
        Ok(id)
    }

    /// Rotation, last step (once everything is resealed): only the current key is kept.
    pub fn drop_old(&self) -> Result<(), SecretsError> {
        if let Some(path) = &self.path {
            let current = read_key_bytes(path)?
                .into_iter()
                .next()
                .ok_or_else(|| SecretsError::NotAKeyFile(path.clone()))?;
            write_atomically(path, &[current])?;
        }
        self.keys_mut().truncate(1);
        self.note_read();
        Ok(())
    }
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read_key_bytes(path: &Path) -> Result<Vec<[u8; 32]>, SecretsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretsError::Io {
        path: path.to_owned(),
        source,
    })?;
    key_bytes(path, &text)
}

fn key_bytes(path: &Path, text: &str) -> Result<Vec<[u8; 32]>, SecretsError> {
    let not_a_key = || SecretsError::NotAKeyFile(path.to_owned());
    let keys = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let hex = line.strip_prefix(LINE).ok_or_else(not_a_key)?.trim();
            let mut bytes = [0u8; 32];
            if hex.len() != 64 {
                return Err(not_a_key());
            }
            for (i, byte) in bytes.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| not_a_key())?;
            }
            Ok(bytes)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(not_a_key());
    }
    Ok(keys)
}

fn parse(path: &Path, text: &str) -> Result<Vec<Key>, SecretsError> {
    key_bytes(path, text)?.iter().map(Key::from_bytes).collect()
}

/// Writes the keys (mode 0600) beside `path`, syncs, then renames over it: never half a file.
fn write_atomically(path: &Path, keys: &[[u8; 32]]) -> Result<(), SecretsError> {
    write_keys(path, keys).map_err(|source| SecretsError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_keys(path: &Path, keys: &[[u8; 32]]) -> std::io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let text: String = keys
        .iter()
        .map(|key| {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            format!("{LINE}{hex}\n")
        })
        .collect();
    let partial = path.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&partial, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_sealed_freshly_each_time_and_opens_only_unaltered() {
        let keyring = Keyring::ephemeral();
        let (a, b) = (
            keyring.seal("hunter2").unwrap(),
            keyring.seal("hunter2").unwrap(),
        );
        assert_ne!(a, b, "a fresh nonce each time");
        assert!(!a.contains("hunter2"));
        assert_eq!(keyring.open(&a).unwrap(), "hunter2");
        assert!(keyring.is_sealed(&a));
        assert!(!keyring.is_sealed("hunter2"));
        let mut altered = a.clone();
        altered.replace_range(altered.len() - 2.., "AA");
        assert!(matches!(keyring.open(&altered), Err(SecretsError::Corrupt)));
        let other = Keyring::ephemeral();
        assert!(matches!(other.open(&a), Err(SecretsError::UnknownKey(_))));
    }

    #[test]
    fn the_key_file_is_made_private_and_rotation_keeps_old_secrets_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("alveole-secrets-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("keys").join("secrets.key");
        let keyring = Keyring::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let old = keyring.seal("old value").unwrap();
        let again = Keyring::load_or_create(&path).unwrap();
        assert_eq!(
            again.open(&old).unwrap(),
            "old value",
            "the same key next start"
        );

        let new_id = keyring.add_current().unwrap();
        let new = keyring.seal("new value").unwrap();
        assert!(new.contains(&new_id));
        assert_eq!(
            keyring.open(&old).unwrap(),
            "old value",
            "the old key still opens"
        );
        // Another process (the running panel) finds the new key in the file: it seals with
        // it, and opens what it seals.
        assert!(again.seal("x").unwrap().contains(&new_id));
        assert_eq!(again.open(&new).unwrap(), "new value");
        keyring.drop_old().unwrap();
        assert!(keyring.open(&old).is_err());
        assert_eq!(
            Keyring::load_or_create(&path).unwrap().current_id(),
            Some(new_id)
        );
        std::fs::write(&path, "not a key\n").unwrap();
        assert!(matches!(
            Keyring::load_or_create(&path),
            Err(SecretsError::NotAKeyFile(_))
        ));
    }
}
