//! The decision log's hash chain. Every record written to a file carries, as its last two members,
//! the hash of the record before it and its own:
//!
//! ```text
//! {…the record…, "prev": "<64 hex>", "hash": "<64 hex>"}      hash = SHA-256(prev ‖ record without them)
//! ```
//!
//! so a record edited, deleted, inserted or moved breaks the chain at the line where it happened,
//! across rotations and restarts (the writer continues from the last record on disk).
//!
//! The chain alone does not prove that nobody rewrote the file from some record to its end, hashes
//! included, nor that records were cut off at the end. Checkpoints narrow that: every
//! `decision_log.checkpoint_every` records (and at a clean stop) the writer adds a record
//! `{"event": "checkpoint", "head": <the hash before it>, "signature": <JWS of {head, at}>}` signed
//! with the handler's key (or `decision_log.checkpoint_key`), so `log verify --key` proves every
//! record up to the last checkpoint was written by a holder of that key. Records after the last
//! checkpoint, and anything a holder of the key writes, remain unproven: keep the key where the
//! log's host cannot read it if the host itself is not trusted, or copy the head elsewhere.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::keys::HandlerKey;

/// The `prev` of the first record ever written.
/// The event of the record a stdout chain begins with, at each start of the process.
pub const LOG_START: &str = "log_start";
/// The event of the record a rotated-to file begins with: the chain goes on from the file before.
pub const LOG_CONTINUED: &str = "log_continued";

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `,"prev":"` + 64 + `","hash":"` + 64 + `"}`.
const SEAL_LEN: usize = 9 + 64 + 10 + 64 + 2;

fn digest(prev: &str, body: &[u8]) -> String {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(prev.as_bytes());
    context.update(body);
    crate::keys::hex(context.finish().as_ref())
}

/// Seals one record (a JSON object, with or without its newline) after `prev`; returns the line
/// to write and its hash.
pub fn seal(prev: &str, record: &[u8]) -> (Vec<u8>, String) {
    let body = record.strip_suffix(b"\n").unwrap_or(record);
    let hash = digest(prev, body);
    let open = body.strip_suffix(b"}").unwrap_or(body);
    let mut line = Vec::with_capacity(body.len() + SEAL_LEN + 1);
    line.extend_from_slice(open);
    if open.len() > 1 {
        line.push(b',');
    }
    line.extend_from_slice(format!("\"prev\":\"{prev}\",\"hash\":\"{hash}\"}}\n").as_bytes());
    (line, hash)
}

/// What a checkpoint's signature covers.
#[derive(Serialize, Deserialize)]
struct Signed {
    head: String,
    at: String,
}

/// A checkpoint record (`event` first, so a reader can tell one cheaply).
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    event: String,
    at: String,
    /// Records since the previous checkpoint.
    records: u64,
    head: String,
    /// The signing key's SHA-256 fingerprint.
    key: String,
    signature: String,
}

const CHECKPOINT_START: &str = "{\"event\":\"checkpoint\"";

/// The checkpoint record (unsealed) for the chain's `head`, signed with `key`.
pub fn checkpoint(key: &HandlerKey, head: &str, records: u64) -> std::io::Result<Vec<u8>> {
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let signed = Signed { head: head.to_string(), at: at.clone() };
    let signature = crate::envelope::jwt::sign_compact(&signed, key).map_err(std::io::Error::other)?;
    let record = Checkpoint {
        event: "checkpoint".into(),
        at,
        records,
        head: head.to_string(),
        key: key.fingerprint().to_string(),
        signature,
    };
    serde_json::to_vec(&record).map_err(std::io::Error::other)
}

/// The public key checkpoints are verified with (`log verify --key`).
pub struct CheckpointKey {
    key: jsonwebtoken::DecodingKey,
    algorithm: jsonwebtoken::Algorithm,
}

impl CheckpointKey {
    /// An RSA (RS256) or P-256 (ES256) public key in PEM.
    pub fn from_pem(pem: &[u8]) -> Result<Self, crate::keys::KeyError> {
        use jsonwebtoken::{Algorithm, DecodingKey};
        match (DecodingKey::from_rsa_pem(pem), DecodingKey::from_ec_pem(pem)) {
            (Ok(key), _) => Ok(Self { key, algorithm: Algorithm::RS256 }),
            (_, Ok(key)) => Ok(Self { key, algorithm: Algorithm::ES256 }),
            (Err(e), _) => Err(crate::keys::KeyError::Invalid(format!("not an RSA or P-256 public key: {e}"))),
        }
    }

    /// Whether `signature` is this key's signature of `head`.
    fn signed(&self, signature: &str, head: &str) -> bool {
        let mut validation = jsonwebtoken::Validation::new(self.algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        jsonwebtoken::decode::<Signed>(signature, &self.key, &validation).is_ok_and(|token| token.claims.head == head)
    }
}

/// A sealed line's record (as it was hashed), `prev` and `hash`; `None` if it carries no seal.
fn unseal(line: &str) -> Option<(String, &str, &str)> {
    let at = line.len().checked_sub(SEAL_LEN)?;
    let seal = line.get(at..)?;
    let prev = seal.strip_prefix(",\"prev\":\"")?.get(..64)?;
    let hash = seal.get(9 + 64..)?.strip_prefix("\",\"hash\":\"")?.get(..64)?;
    if !seal.ends_with("\"}") {
        return None;
    }
    Some((format!("{}}}", &line[..at]), prev, hash))
}

/// How far back [`heal`] looks for the last sealed record.
const HEAL_WINDOW: u64 = 16 * 1024 * 1024;

/// Whether `line` (without its newline) ends in a seal: enough to find where records end.
fn ends_sealed(line: &[u8]) -> bool {
    line.len() >= SEAL_LEN
        && std::str::from_utf8(&line[line.len() - SEAL_LEN..]).is_ok_and(|tail| {
            let line = format!("{{{tail}");
            unseal(&line).is_some()
        })
}

/// Cuts the file back to the end of its last sealed record — what a crash, a full disk or a
/// failed write left after it is dropped — and returns how many bytes were dropped, so the chain
/// continues from its last record instead of being appended to a fragment. A file whose end is
/// not a decision log (no sealed record in its last 16 MiB, but complete lines) is left alone.
pub fn heal(path: &Path) -> std::io::Result<u64> {
    let mut file = match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    // Only a regular file has an end to heal (`/dev/full` reads zeros for ever).
    if !file.metadata()?.is_file() {
        return Ok(0);
    }
    let len = file.seek(SeekFrom::End(0))?;
    let start = len.saturating_sub(HEAL_WINDOW);
    file.seek(SeekFrom::Start(start))?;
    let mut window = Vec::with_capacity((len - start) as usize);
    (&mut file).take(len - start).read_to_end(&mut window)?;
    let newlines = window.iter().enumerate().rev().filter(|(_, b)| **b == b'\n').map(|(i, _)| i);
    let mut any_line = false;
    let mut keep = None;
    for newline in newlines {
        any_line = true;
        if ends_sealed(&window[..newline]) {
            keep = Some(start + newline as u64 + 1);
            break;
        }
    }
    let keep = match keep {
        Some(keep) => keep,
        None if !any_line && start == 0 => 0,
        None => return Ok(0),
    };
    if keep < len {
        file.set_len(keep)?;
        file.sync_data()?;
    }
    Ok(len - keep)
}

/// Whether the file's last record is a checkpoint (a writer that resumes after one owes none).
pub fn ends_with_checkpoint(path: &Path) -> std::io::Result<bool> {
    Ok(last_line(path)?.is_some_and(|line| line.starts_with(CHECKPOINT_START)))
}

/// The hash of the last record of the newest of `files` that has one: where a writer continues.
pub fn head(files: &[PathBuf]) -> std::io::Result<Option<String>> {
    for file in files {
        if let Some(line) = last_line(file)? {
            return Ok(unseal(&line).map(|(_, _, hash)| hash.to_string()));
        }
    }
    Ok(None)
}

/// The last non-empty line of a file, read backwards (records can be megabytes; files gigabytes).
fn last_line(path: &Path) -> std::io::Result<Option<String>> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut end = file.seek(SeekFrom::End(0))?;
    let mut tail: Vec<u8> = Vec::new();
    while end > 0 {
        let step = end.min(64 * 1024);
        end -= step;
        file.seek(SeekFrom::Start(end))?;
        let mut chunk = vec![0; step as usize];
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        let trimmed = tail.strip_suffix(b"\n").unwrap_or(&tail);
        if let Some(newline) = trimmed.iter().rposition(|b| *b == b'\n') {
            return Ok(Some(String::from_utf8_lossy(&trimmed[newline + 1..]).into_owned()));
        }
    }
    let trimmed = tail.strip_suffix(b"\n").unwrap_or(&tail);
    Ok((!trimmed.is_empty()).then(|| String::from_utf8_lossy(trimmed).into_owned()))
}

/// The last checkpoint of the files, and what follows it.
#[derive(Debug, PartialEq, Eq)]
pub struct LastCheckpoint {
    pub file: PathBuf,
    pub line: usize,
    /// Records written after it: not covered by a signature.
    pub records_after: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub records: usize,
    /// The last record's hash: keep it elsewhere to detect a rewrite or a cut at the end.
    pub head: String,
    /// Whether the first record is the first ever (`prev` = [`GENESIS`]), or the files start after
    /// records that were rotated away.
    pub from_genesis: bool,
    /// Checkpoints found (their signatures verified when a key was given).
    pub checkpoints: usize,
    pub last_checkpoint: Option<LastCheckpoint>,
    /// Chains in the files: one per start of the process for a stdout log, else 1.
    pub segments: usize,
    /// The most records any chain ends with after its last checkpoint (with --key, at most
    /// `checkpoint_every`: the writer signs at least that often).
    pub longest_unsigned_tail: usize,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {what}", file.display())]
pub struct Broken {
    pub file: PathBuf,
    pub line: usize,
    pub what: &'static str,
}

/// Checks `files`, oldest first, as one chain; with `key`, every checkpoint's signature too.
pub fn verify(files: &[PathBuf], key: Option<&CheckpointKey>) -> std::io::Result<Result<Verified, Broken>> {
    let mut expected: Option<String> = None;
    let (mut records, mut from_genesis, mut checkpoints, mut segments) = (0, false, 0, 1);
    let mut awaiting_checkpoint = false;
    // Records after the last checkpoint of the current chain, and the most any chain ended with.
    let (mut tail, mut longest_tail) = (0, 0);
    let mut last_checkpoint: Option<LastCheckpoint> = None;
    for file in files {
        let text = std::fs::read_to_string(file)?;
        for (index, line) in text.lines().enumerate() {
            let broken = |what| Ok(Err(Broken { file: file.clone(), line: index + 1, what }));
            let Some((body, prev, hash)) = unseal(line) else {
                return broken("not a sealed record: edited, or written outside the chain");
            };
            if digest(prev, body.as_bytes()) != hash {
                return broken("edited: the record does not match its hash");
            }
            // A stdout log holds one chain per start of the process: a new one may begin only
            // with its `log_start` record (and, with --key, its signed checkpoint right after).
            let starts_chain = prev == GENESIS && is_event(&body, LOG_START);
            match &expected {
                Some(_) if starts_chain => {
                    segments += 1;
                    awaiting_checkpoint = key.is_some();
                    longest_tail = longest_tail.max(tail);
                    tail = 0;
                }
                Some(previous) if previous != prev => {
                    return broken("out of the chain: a record before it was deleted, or this one inserted or moved");
                }
                Some(_) if awaiting_checkpoint && !body.starts_with(CHECKPOINT_START) => {
                    return broken("a stdout chain whose start is not signed: a checkpoint must follow log_start");
                }
                Some(_) => {}
                None => {
                    from_genesis = prev == GENESIS;
                    awaiting_checkpoint = starts_chain && key.is_some();
                    // Records cut from the head of a file would leave it starting mid-chain.
                    if !from_genesis && !is_event(&body, LOG_CONTINUED) {
                        return broken(
                            "the first record neither starts the chain nor continues a rotated file: records before it were deleted",
                        );
                    }
                }
            }
            if body.starts_with(CHECKPOINT_START) {
                awaiting_checkpoint = false;
            }
            if body.starts_with(CHECKPOINT_START) {
                let Ok(checkpoint) = serde_json::from_str::<Checkpoint>(&body) else {
                    return broken("a checkpoint that cannot be read");
                };
                if checkpoint.head != prev {
                    return broken("a checkpoint of another head than the record before it");
                }
                if key.is_some_and(|key| !key.signed(&checkpoint.signature, prev)) {
                    return broken("a checkpoint whose signature does not verify with --key");
                }
                checkpoints += 1;
                tail = 0;
                last_checkpoint = Some(LastCheckpoint { file: file.clone(), line: index + 1, records_after: 0 });
            } else {
                tail += 1;
                if let Some(last) = &mut last_checkpoint {
                    last.records_after += 1;
                }
            }
            expected = Some(hash.to_string());
            records += 1;
        }
    }
    Ok(Ok(Verified {
        records,
        head: expected.unwrap_or_else(|| GENESIS.to_string()),
        from_genesis,
        checkpoints,
        last_checkpoint,
        segments,
        longest_unsigned_tail: longest_tail.max(tail),
    }))
}

fn is_event(body: &str, event: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body).is_ok_and(|v| v["event"] == event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heal_cuts_a_torn_tail_back_to_the_last_sealed_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (first, _) = seal(GENESIS, b"{\"a\":1}");
        for (tail, dropped) in [(&b"{\"b\":"[..], 5), (b"", 0), (b"{\"b\":2}\n", 8)] {
            std::fs::write(&path, [first.as_slice(), tail].concat()).unwrap();
            assert_eq!(heal(&path).unwrap(), dropped);
            assert_eq!(std::fs::read(&path).unwrap(), first);
        }
        std::fs::write(&path, b"{\"torn\"").unwrap();
        assert_eq!(heal(&path).unwrap(), 7, "a torn first record leaves an empty file");
        std::fs::write(&path, b"not a decision log\n").unwrap();
        assert_eq!(heal(&path).unwrap(), 0, "a file that is not a chain is left alone");
    }

    #[test]
    fn a_sealed_record_unseals_to_what_was_hashed() {
        let (line, hash) = seal(GENESIS, b"{\"a\":1}\n");
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.starts_with("{\"a\":1,\"prev\":\"0000") && text.ends_with("\"}\n"), "{text}");
        let (body, prev, sealed) = unseal(text.trim_end()).unwrap();
        assert_eq!((body.as_str(), prev, sealed), ("{\"a\":1}", GENESIS, hash.as_str()));
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(value["hash"], hash.as_str(), "still one JSON object");
        assert_eq!(unseal("{\"a\":1}"), None);
    }
}
