//! The bytes two agents exchange to copy a volume: the target's manifest (what it has), and a
//! pass (what the source sends to make the target's tree its own). Binary and length-prefixed,
//! because paths are bytes, not text; every length is bounded, so a bad stream is an error,
//! never a huge allocation or a panic.
//!
//! A pass is a sequence of frames: `R` remove, `D` directory, `L` symlink, `F` file (then `C`
//! chunks and `E` its end, with the SHA-256 of what was sent), `Z` the end of the pass with
//! its counts. The receiver checks each file's digest before renaming it into place.

use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::moves::volume_sync::{Delta, Entry, Manifest, PassReport, Scan, SourceTree, TreeWriter};

/// The longest path a frame may carry (Linux's PATH_MAX).
const MAX_PATH: usize = 4096;
/// The largest chunk of a file's contents in one frame.
pub const CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the copy stream broke: {0}")]
    Io(#[from] std::io::Error),
    #[error("the copy stream is malformed: {0}")]
    Malformed(String),
    #[error("{path}: the contents received differ from those sent (digest mismatch)")]
    Digest { path: PathBuf },
    #[error(transparent)]
    Tree(#[from] crate::moves::volume_sync::SyncError),
}

fn malformed(what: impl Into<String>) -> WireError {
    WireError::Malformed(what.into())
}

// --- primitives ---------------------------------------------------------------------------

fn put_u32(out: &mut impl Write, value: u32) -> std::io::Result<()> {
    out.write_all(&value.to_le_bytes())
}

fn put_u64(out: &mut impl Write, value: u64) -> std::io::Result<()> {
    out.write_all(&value.to_le_bytes())
}

fn put_bytes(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "too long"))?;
    put_u32(out, len)?;
    out.write_all(bytes)
}

fn put_path(out: &mut impl Write, path: &Path) -> std::io::Result<()> {
    put_bytes(out, path.as_os_str().as_bytes())
}

fn get_array<const N: usize>(input: &mut impl Read) -> Result<[u8; N], WireError> {
    let mut buffer = [0u8; N];
    input.read_exact(&mut buffer)?;
    Ok(buffer)
}

fn get_u8(input: &mut impl Read) -> Result<u8, WireError> {
    Ok(get_array::<1>(input)?[0])
}

fn get_u32(input: &mut impl Read) -> Result<u32, WireError> {
    Ok(u32::from_le_bytes(get_array(input)?))
}

fn get_u64(input: &mut impl Read) -> Result<u64, WireError> {
    Ok(u64::from_le_bytes(get_array(input)?))
}

fn get_i64(input: &mut impl Read) -> Result<i64, WireError> {
    Ok(i64::from_le_bytes(get_array(input)?))
}

fn get_bytes(input: &mut impl Read, limit: usize) -> Result<Vec<u8>, WireError> {
    let len = get_u32(input)? as usize;
    if len > limit {
        return Err(malformed(format!(
            "a field of {len} bytes (at most {limit})"
        )));
    }
    let mut bytes = vec![0u8; len];
    input.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// A relative path inside the tree: no root, no `..`, no `.`, not empty. What a peer sends is
/// checked here before it reaches the file system (which checks again, beneath the root).
fn get_path(input: &mut impl Read) -> Result<PathBuf, WireError> {
    let path = PathBuf::from(std::ffi::OsString::from_vec(get_bytes(input, MAX_PATH)?));
    let inside = !path.as_os_str().is_empty()
        && path.components().all(|c| matches!(c, Component::Normal(_)));
    if !inside {
        return Err(malformed(format!(
            "{} is not a path inside the volume",
            path.display()
        )));
    }
    Ok(path)
}

fn put_entry(out: &mut impl Write, path: &Path, entry: &Entry) -> std::io::Result<()> {
    match entry {
        Entry::File {
            size,
            modified,
            mode,
            uid,
            gid,
        } => {
            out.write_all(b"f")?;
            put_path(out, path)?;
            put_u64(out, *size)?;
            put_u64(out, modified.0 as u64)?;
            put_u64(out, modified.1 as u64)?;
            for value in [*mode, *uid, *gid] {
                put_u32(out, value)?;
            }
        }
        Entry::Dir { mode, uid, gid } => {
            out.write_all(b"d")?;
            put_path(out, path)?;
            for value in [*mode, *uid, *gid] {
                put_u32(out, value)?;
            }
        }
        Entry::Symlink { target, uid, gid } => {
            out.write_all(b"l")?;
            put_path(out, path)?;
            put_bytes(out, target.as_os_str().as_bytes())?;
            put_u32(out, *uid)?;
            put_u32(out, *gid)?;
        }
    }
    Ok(())
}

fn get_owner_mode(input: &mut impl Read) -> Result<(u32, u32, u32), WireError> {
    Ok((get_u32(input)?, get_u32(input)?, get_u32(input)?))
}

// --- the manifest ---------------------------------------------------------------------------

/// The target's entries, as the source needs them to plan a pass.
pub fn encode_manifest(manifest: &Manifest) -> Vec<u8> {
    let mut out = Vec::with_capacity(manifest.len() * 64);
    for (path, entry) in manifest {
        // Writing to a Vec cannot fail.
        let _ = put_entry(&mut out, path, entry);
    }
    out
}

pub fn decode_manifest(mut input: &[u8]) -> Result<Manifest, WireError> {
    let mut manifest = Manifest::new();
    while !input.is_empty() {
        let (path, entry) = read_entry(&mut input)?;
        manifest.insert(path, entry);
    }
    Ok(manifest)
}

// --- a pass -----------------------------------------------------------------------------------

/// Writes the pass that turns the target (`theirs`) into `source` as scanned, reading file
/// contents from `tree`. What it sent, counted.
pub fn send_pass(
    source: &Scan,
    theirs: &Manifest,
    delta: &Delta,
    tree: &SourceTree,
    out: &mut impl Write,
) -> Result<PassReport, WireError> {
    let mut report = PassReport {
        special: source.special,
        ..PassReport::default()
    };
    for path in &delta.remove {
        out.write_all(b"R")?;
        put_path(out, path)?;
        let is_dir = matches!(theirs.get(path), Some(Entry::Dir { .. }));
        out.write_all(&[u8::from(is_dir)])?;
        report.removed += 1;
    }
    for path in delta.dirs.iter().chain(&delta.symlinks) {
        if let Some(entry) = source.entries.get(path) {
            out.write_all(b"P")?;
            put_entry(out, path, entry)?;
        }
    }
    let mut buffer = vec![0u8; CHUNK];
    for path in &delta.files {
        let Some(entry) = source.entries.get(path) else {
            continue;
        };
        let Some(mut reading) = tree.read(path, entry)? else {
            continue;
        };
        out.write_all(b"F")?;
        put_entry(out, path, entry)?;
        let mut digest = Sha256::new();
        let mut sent = 0u64;
        loop {
            let n = reading.file().read(&mut buffer)?;
            if n == 0 {
                break;
            }
            out.write_all(b"C")?;
            put_bytes(out, &buffer[..n])?;
            digest.update(&buffer[..n]);
            sent += n as u64;
        }
        let stable = reading.stable()?;
        out.write_all(b"E")?;
        out.write_all(&[u8::from(stable)])?;
        out.write_all(&digest.finalize())?;
        report.files += 1;
        report.bytes += sent;
        report.unstable += usize::from(!stable);
    }
    out.write_all(b"Z")?;
    put_u64(out, report.files as u64)?;
    put_u64(out, report.bytes)?;
    out.flush()?;
    Ok(report)
}

/// Applies a pass read from `input` to the tree `writer` writes. A file whose digest does not
/// match is discarded and the pass fails; files before it stay (the next pass skips them).
pub fn receive_pass(input: &mut impl Read, writer: &TreeWriter) -> Result<PassReport, WireError> {
    let mut report = PassReport::default();
    let mut buffer = Vec::with_capacity(CHUNK);
    loop {
        match get_u8(input)? {
            b'R' => {
                let path = get_path(input)?;
                let is_dir = get_u8(input)? == 1;
                writer.remove(&path, is_dir)?;
                report.removed += 1;
            }
            b'P' => {
                let manifest = read_entry(input)?;
                writer.put(&manifest.0, &manifest.1)?;
            }
            b'F' => {
                let (path, entry) = read_entry(input)?;
                let mut partial = writer.begin_file(&path)?;
                let mut digest = Sha256::new();
                let mut written = 0u64;
                let stable = loop {
                    match get_u8(input)? {
                        b'C' => {
                            let len = get_u32(input)? as usize;
                            if len > CHUNK {
                                return Err(malformed(format!("a chunk of {len} bytes")));
                            }
                            buffer.resize(len, 0);
                            input.read_exact(&mut buffer)?;
                            partial.file().write_all(&buffer)?;
                            digest.update(&buffer);
                            written += len as u64;
                        }
                        b'E' => break get_u8(input)? == 1,
                        other => {
                            return Err(malformed(format!("unexpected frame {other} in a file")));
                        }
                    }
                };
                let expected: [u8; 32] = get_array(input)?;
                if digest.finalize()[..] != expected[..] {
                    partial.discard();
                    return Err(WireError::Digest { path });
                }
                partial.finish(&entry, stable)?;
                report.files += 1;
                report.bytes += written;
                report.unstable += usize::from(!stable);
            }
            b'Z' => {
                let (files, bytes) = (get_u64(input)?, get_u64(input)?);
                if files != report.files as u64 || bytes != report.bytes {
                    return Err(malformed(format!(
                        "the pass announced {files} files and {bytes} bytes, {} and {} arrived",
                        report.files, report.bytes
                    )));
                }
                return Ok(report);
            }
            other => return Err(malformed(format!("unknown frame {other}"))),
        }
    }
}

/// One entry as [`put_entry`] wrote it.
fn read_entry(input: &mut impl Read) -> Result<(PathBuf, Entry), WireError> {
    let tag = get_u8(input)?;
    let path = get_path(input)?;
    let entry = match tag {
        b'f' => {
            let size = get_u64(input)?;
            let modified = (get_i64(input)?, get_i64(input)?);
            let (mode, uid, gid) = get_owner_mode(input)?;
            Entry::File {
                size,
                modified,
                mode,
                uid,
                gid,
            }
        }
        b'd' => {
            let (mode, uid, gid) = get_owner_mode(input)?;
            Entry::Dir { mode, uid, gid }
        }
        b'l' => {
            let target = PathBuf::from(std::ffi::OsString::from_vec(get_bytes(input, MAX_PATH)?));
            Entry::Symlink {
                target,
                uid: get_u32(input)?,
                gid: get_u32(input)?,
            }
        }
        other => return Err(malformed(format!("unknown entry {other}"))),
    };
    Ok((path, entry))
}
