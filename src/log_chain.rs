//! The decision log's hash chain. Every record written to a file carries, as its last two members,
//! the hash of the record before it and its own:
//!
//! ```text
//! {…the record…, "prev": "<64 hex>", "hash": "<64 hex>"}      hash = SHA-256(prev ‖ record without them)
//! ```
//!
//! so a record edited, deleted, inserted or moved breaks the chain at the line where it happened,
//! across rotations and restarts (the writer continues from the last record on disk). What it does
//! not prove: that nobody rewrote the file from some record to its end, hashes included, nor that
//! records were cut off at the end — for those, keep the head hash (`log verify` prints it)
//! somewhere the log's host cannot change.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The `prev` of the first record ever written.
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

#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub records: usize,
    /// The last record's hash: keep it elsewhere to detect a rewrite or a cut at the end.
    pub head: String,
    /// Whether the first record is the first ever (`prev` = [`GENESIS`]), or the files start after
    /// records that were rotated away.
    pub from_genesis: bool,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {what}", file.display())]
pub struct Broken {
    pub file: PathBuf,
    pub line: usize,
    pub what: &'static str,
}

/// Checks `files`, oldest first, as one chain.
pub fn verify(files: &[PathBuf]) -> std::io::Result<Result<Verified, Broken>> {
    let mut expected: Option<String> = None;
    let (mut records, mut from_genesis) = (0, false);
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
            match &expected {
                Some(previous) if previous != prev => {
                    return broken("out of the chain: a record before it was deleted, or this one inserted or moved");
                }
                Some(_) => {}
                None => from_genesis = prev == GENESIS,
            }
            expected = Some(hash.to_string());
            records += 1;
        }
    }
    Ok(Ok(Verified { records, head: expected.unwrap_or_else(|| GENESIS.to_string()), from_genesis }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
