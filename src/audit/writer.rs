//! The writer thread: batches records, seals them into the chain, writes, syncs, rotates, and
//! heals the file after a torn or failed write.

use crate::metrics::Metrics;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;

use super::*;

pub(super) struct Writer {
    sink: Sink,
    durable: bool,
    out: Option<Output>,
    /// When the sink started failing, for the record that says it works again.
    failing_since: Option<String>,
    /// The hash of the last record written to the file: the next one's `prev` (see `log_chain`).
    prev: String,
    checkpoints: Option<Checkpoints>,
    /// Records written since the last checkpoint.
    unsigned: u64,
    /// Where the file ended before a write that failed: what it left after that is cut off
    /// when the file is opened again.
    cut_at: Option<u64>,
    /// Bytes cut off and not yet said in a `cut` record (the next record written says it).
    dropped: u64,
    /// What the next batch begins with: a new chain (stdout, at each start), or the record that
    /// opens a file continuing the chain of the one before it (after a rotation).
    opening: Option<Opening>,
}

pub(super) enum Output {
    Stdout(std::io::Stdout),
    File { file: BufWriter<File>, written: u64 },
}

impl Writer {
    pub(super) fn open(settings: &DecisionLogSettings) -> std::io::Result<Self> {
        let (sink, durable) = (&settings.sink, settings.durable);
        // The chain continues from the last record on disk, across restarts and rotations.
        // A crash or a full disk may have left part of a record at the end: cut back to the last
        // sealed one first, so the chain continues from it (and a `cut` record says so).
        let (prev, dropped, resumed_signed) = match sink {
            Sink::File { path, .. } => {
                let dropped = crate::audit::chain::heal(path)?;
                let prev = crate::audit::chain::head(&[path.clone(), numbered(path, 1)])?;
                (prev, dropped, !path.exists() || crate::audit::chain::ends_with_checkpoint(path)?)
            }
            Sink::Off | Sink::Stdout => (None, 0, true),
        };
        let prev = prev.unwrap_or_else(|| crate::audit::chain::GENESIS.to_string());
        if dropped > 0 {
            tracing::warn!(
                dropped_bytes = dropped,
                "the decision log ended in a partial record: cut back to the last sealed one"
            );
        }
        // How many records before this start are unsigned is unknown: sign them with the first
        // record written, so no more than `checkpoint_every` ever follow a checkpoint.
        let unsigned = match &settings.checkpoints {
            Some(c) if !resumed_signed => c.every.saturating_sub(1),
            _ => 0,
        };
        let mut writer = Self {
            sink: sink.clone(),
            durable,
            out: None,
            failing_since: None,
            prev,
            checkpoints: settings.checkpoints.clone(),
            unsigned,
            cut_at: None,
            dropped,
            opening: None,
        };
        writer.opening = match sink {
            Sink::Stdout => Some(Opening::Start),
            // A fresh file after a rotation (here: one the last run rotated away) says it continues.
            Sink::File { path, .. } if writer.prev != crate::audit::chain::GENESIS && file_is_empty(path) => {
                Some(Opening::Continued)
            }
            _ => None,
        };
        writer.out = Some(writer.open_output()?);
        Ok(writer)
    }

    fn open_output(&mut self) -> std::io::Result<Output> {
        match &self.sink {
            Sink::Off | Sink::Stdout => Ok(Output::Stdout(std::io::stdout())),
            Sink::File { path, .. } => {
                let file = open_file(path)?;
                let mut written = file.metadata()?.len();
                if let Some(at) = self.cut_at.filter(|at| *at < written) {
                    file.set_len(at)?;
                    self.dropped += written - at;
                    written = at;
                }
                self.cut_at = None;
                Ok(Output::File { file: BufWriter::with_capacity(256 * 1024, file), written })
            }
        }
    }

    pub(super) fn run(mut self, mut records: mpsc::Receiver<Message>, healthy: &AtomicBool, metrics: &Metrics) {
        while let Some(first) = records.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match records.try_recv() {
                    Ok(message) => batch.push(message),
                    Err(_) => break,
                }
            }
            let mut acks = Vec::with_capacity(batch.len());
            let (mut close, mut reopen, mut probe) = (None, false, false);
            let mut lines = Vec::with_capacity(batch.len());
            for message in batch {
                match message {
                    Message::Record { line, ack } => {
                        lines.push(line);
                        acks.extend(ack);
                    }
                    Message::Reopen => reopen = true,
                    Message::Probe => probe = true,
                    Message::Close(ack) => close = Some(ack),
                }
            }
            // The probe is a record of its own: the log says when it could not be written.
            if probe && lines.is_empty() && self.failing_since.is_some() {
                lines.push(self.recovery_record());
            }
            let result = self.write_batch(&lines).map_err(|e| e.to_string());
            match &result {
                Err(error) => {
                    metrics.log_error();
                    tracing::error!(%error, records = lines.len(), "decision log write failed");
                    self.failing_since.get_or_insert_with(now);
                }
                Ok(()) if !lines.is_empty() => {
                    if let Some(since) = self.failing_since.take() {
                        tracing::info!(%since, "decision log writable again");
                    }
                }
                Ok(()) => {}
            }
            if !lines.is_empty() {
                healthy.store(result.is_ok(), Ordering::Release);
            }
            if reopen {
                // Dropping the output flushes nothing more: each batch is flushed as written.
                self.out = None;
                tracing::info!("decision log reopened");
            }
            for ack in acks {
                let _ = ack.send(result.clone());
            }
            if let Some(ack) = close {
                // The head at a clean stop is signed too, so nothing written is left uncovered.
                if self.unsigned > 0
                    && let Err(error) = self.write_batch(&[])
                {
                    tracing::error!(%error, "the decision log's closing checkpoint could not be written");
                }
                let _ = ack.send(());
                return;
            }
        }
    }

    /// Says that bytes after the last sealed record were cut off (a torn or failed write).
    fn cut_record(&self) -> Vec<u8> {
        let record = serde_json::json!({"event": "cut", "at": now(), "dropped_bytes": self.dropped});
        let mut line = record.to_string().into_bytes();
        line.push(b'\n');
        line
    }

    fn recovery_record(&self) -> Vec<u8> {
        let record = serde_json::json!({
            "event": "decision_log_recovered",
            "at": now(),
            "failing_since": self.failing_since,
        });
        let mut line = record.to_string().into_bytes();
        line.push(b'\n');
        line
    }

    /// Writes, flushes and (durable) syncs one batch, with the checkpoints that fall in it; an
    /// empty batch writes a checkpoint if records are unsigned (closing). Both sinks are chained:
    /// stdout starts a new chain at each start of the process, with a `log_start` record (and a
    /// checkpoint, when there is a key) — `log verify` accepts a new chain only there.
    fn write_batch(&mut self, lines: &[Vec<u8>]) -> std::io::Result<()> {
        let closing = lines.is_empty();
        if closing && (self.unsigned == 0 || self.checkpoints.is_none()) {
            return Ok(());
        }
        let mut out = match self.out.take() {
            Some(out) => out,
            None => self.open_output()?,
        };
        let start = match &out {
            Output::File { written, .. } => Some(*written),
            Output::Stdout(_) => None,
        };
        let cut = (self.dropped > 0).then(|| self.cut_record());
        let lines: Vec<&[u8]> = cut.iter().map(Vec::as_slice).chain(lines.iter().map(Vec::as_slice)).collect();
        let (mut prev, mut unsigned) = (self.prev.clone(), self.unsigned);
        let opening = self.opening.take();
        let mut sealed_batch = Vec::new();
        let mut seal = |line: &[u8], prev: &mut String| {
            let (sealed, hash) = crate::audit::chain::seal(prev, line);
            sealed_batch.extend_from_slice(&sealed);
            *prev = hash;
        };
        let sign = |prev: &str, unsigned: u64| -> std::io::Result<Option<Vec<u8>>> {
            self.checkpoints.as_ref().map(|c| crate::audit::chain::checkpoint(&c.key, prev, unsigned)).transpose()
        };
        match opening {
            Some(Opening::Start) => {
                seal(&opening_record(crate::audit::chain::LOG_START, &prev), &mut prev);
                if let Some(checkpoint) = sign(&prev, 1)? {
                    seal(&checkpoint, &mut prev);
                }
            }
            Some(Opening::Continued) => {
                seal(&opening_record(crate::audit::chain::LOG_CONTINUED, &prev), &mut prev);
                unsigned += 1;
            }
            None => {}
        }
        for line in &lines {
            seal(line, &mut prev);
            unsigned += 1;
            if let Some(checkpoints) = &self.checkpoints
                && unsigned >= checkpoints.every
            {
                seal(&crate::audit::chain::checkpoint(&checkpoints.key, &prev, unsigned)?, &mut prev);
                unsigned = 0;
            }
        }
        if closing && let Some(checkpoint) = sign(&prev, unsigned)? {
            seal(&checkpoint, &mut prev);
            unsigned = 0;
        }
        let durable = self.durable;
        let result = (|| match &mut out {
            Output::Stdout(stdout) => {
                let mut lock = stdout.lock();
                lock.write_all(&sealed_batch)?;
                lock.flush()
            }
            Output::File { file, written } => {
                file.write_all(&sealed_batch)?;
                *written += sealed_batch.len() as u64;
                file.flush()?;
                if durable {
                    file.get_ref().sync_data()?;
                }
                Ok(())
            }
        })();
        // On an error the output is dropped (flushing what it can), and reopened with the next
        // batch, cut back to where this one began: a failed batch leaves nothing in the chain.
        if let Err(error) = result {
            drop(out);
            self.cut_at = start;
            self.opening = opening;
            return Err(error);
        }
        self.dropped = 0;
        self.prev = prev;
        self.unsigned = unsigned;
        self.out = Some(out);
        self.rotate_if_full()
    }

    fn rotate_if_full(&mut self) -> std::io::Result<()> {
        let Sink::File { path, max_bytes, keep } = &self.sink else { return Ok(()) };
        let Some(Output::File { written, .. }) = &self.out else { return Ok(()) };
        if *written < *max_bytes {
            return Ok(());
        }
        self.out = None;
        rotate(path, *keep)?;
        self.out = Some(self.open_output()?);
        self.opening = Some(Opening::Continued);
        Ok(())
    }
}

/// The record a chain's file begins with, when it is not the first record ever.
#[derive(Debug, Clone, Copy)]
enum Opening {
    /// A stdout chain, at each start of the process (nothing before it can be linked).
    Start,
    /// A file continuing the chain of the file rotated away before it.
    Continued,
}

fn opening_record(event: &str, prev: &str) -> Vec<u8> {
    let record = match event {
        crate::audit::chain::LOG_START => {
            serde_json::json!({"event": event, "sink": "stdout", "at": now(), "pid": std::process::id()})
        }
        _ => serde_json::json!({"event": event, "at": now(), "previous_head": prev}),
    };
    let mut line = record.to_string().into_bytes();
    line.push(b'\n');
    line
}

fn file_is_empty(path: &Path) -> bool {
    std::fs::metadata(path).map_or(true, |m| m.len() == 0)
}

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The log file, for appending; created readable by its owner only, as it holds full payloads.
/// Opens the log file for appending, creating it owner-only — and its directory, as the state
/// store's is (a fresh volume holds neither).
pub fn open_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o750).create(parent)?;
    }
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

/// The `n`th rotated file of `path`: `decisions.jsonl.1` is the newest.
pub(super) fn numbered(path: &Path, n: usize) -> PathBuf {
    PathBuf::from(format!("{}.{n}", path.display()))
}

/// `log` → `log.1` → `log.2` … keeping `keep` rotated files.
pub(super) fn rotate(path: &Path, keep: usize) -> std::io::Result<()> {
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(numbered(path, keep));
    for n in (1..keep).rev() {
        if numbered(path, n).exists() {
            std::fs::rename(numbered(path, n), numbered(path, n + 1))?;
        }
    }
    std::fs::rename(path, numbered(path, 1))
}
