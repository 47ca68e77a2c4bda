//! The decision log: one JSON line for every request that reached a decision or was refused, to
//! stdout or to a size-rotated file. In durable mode a record is on disk (fsync) before its answer
//! leaves; the writer batches records so one fsync covers every request waiting at that moment.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

pub mod chain;
pub mod records;

/// Records waiting for the writer beyond this are dropped (non-durable) or wait (durable).
const QUEUE_DEPTH: usize = 16 * 1024;
const BATCH: usize = 1024;
/// How often a failing sink is tried again, without waiting for a request (a load balancer that
/// took the instance out of rotation on `/readyz` sends none).
const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// What a redacted value becomes in the log.
pub const REDACTED: &str = "[REDACTED]";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// No decision log (`decision_log.enabled = false`).
    Off,
    Stdout,
    File {
        path: PathBuf,
        max_bytes: u64,
        keep: usize,
    },
}

#[derive(Debug, Clone)]
pub struct DecisionLogSettings {
    pub sink: Sink,
    pub durable: bool,
    /// JSON pointers into the input document whose values are replaced; `*` matches any key or index.
    pub redact: Vec<String>,
    /// Signed checkpoints of the file's hash chain (see `log_chain`).
    pub checkpoints: Option<Checkpoints>,
}

/// A checkpoint — the chain's head signed with `key` — after every `every` records, and at close.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    pub key: Arc<crate::keys::HandlerKey>,
    pub every: u64,
}

impl Default for DecisionLogSettings {
    fn default() -> Self {
        Self { sink: Sink::Stdout, durable: false, redact: Vec::new(), checkpoints: None }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error("decision log write failed: {0}")]
    Write(String),
    #[error("decision log queue is full")]
    QueueFull,
    #[error("decision log is closed")]
    Closed,
}

enum Message {
    Record {
        line: Vec<u8>,
        ack: Option<oneshot::Sender<Result<(), String>>>,
    },
    /// Write to a freshly opened file from now on (after logrotate renamed the old one: SIGHUP).
    Reopen,
    /// Try a failing sink again.
    Probe,
    Close(oneshot::Sender<()>),
}

pub struct DecisionLog {
    /// `None` when the sink is off.
    queue: Option<mpsc::Sender<Message>>,
    durable: bool,
    redact: Vec<Vec<String>>,
    healthy: Arc<AtomicBool>,
}

impl DecisionLog {
    /// Opens the sink and starts the writer thread.
    pub fn open(settings: &DecisionLogSettings, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let healthy = Arc::new(AtomicBool::new(true));
        let redact = settings.redact.iter().map(|p| parse_pointer(p)).collect();
        if settings.sink == Sink::Off {
            return Ok(Self { queue: None, durable: false, redact, healthy });
        }
        let writer = Writer::open(settings)?;
        let (queue, records) = mpsc::channel(QUEUE_DEPTH);
        let flag = Arc::clone(&healthy);
        std::thread::Builder::new().name("decision-log".into()).spawn(move || writer.run(records, &flag, &metrics))?;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(probe(queue.downgrade(), Arc::clone(&healthy)));
        }
        Ok(Self { queue: Some(queue), durable: settings.durable, redact, healthy })
    }

    /// Starts a new file at the configured path for the records that follow (logrotate's
    /// `create` rotation: it renamed the file, then sent SIGHUP).
    pub async fn reopen(&self) {
        if let Some(queue) = &self.queue {
            let _ = queue.send(Message::Reopen).await;
        }
    }

    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// Whether the last write reached the sink.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Replaces the configured fields of an input document. The transfer view is derived from
    /// the request (replay derives it again), so redacting any request field redacts it whole:
    /// it would repeat the redacted value otherwise.
    pub fn redact(&self, input: &mut Value) {
        for pointer in &self.redact {
            redact_at(input, pointer);
        }
        if self.redact.iter().any(|p| p.first().is_some_and(|head| head == "request"))
            && let Some(transfer) = input.pointer_mut("/context/transfer")
        {
            *transfer = Value::String(REDACTED.into());
        }
    }

    pub fn needs_redaction(&self) -> bool {
        !self.redact.is_empty()
    }

    /// Appends a record. In durable mode, returns once it is on disk.
    pub async fn append(&self, record: &impl Serialize) -> Result<(), LogError> {
        let Some(queue) = &self.queue else { return Ok(()) };
        let mut line = serde_json::to_vec(record).map_err(|e| LogError::Write(e.to_string()))?;
        line.push(b'\n');
        if !self.durable {
            return queue.try_send(Message::Record { line, ack: None }).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => LogError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => LogError::Closed,
            });
        }
        let (ack, written) = oneshot::channel();
        queue.send(Message::Record { line, ack: Some(ack) }).await.map_err(|_| LogError::Closed)?;
        written.await.map_err(|_| LogError::Closed)?.map_err(LogError::Write)
    }

    /// Writes out everything queued, flushes and stops the writer.
    pub async fn close(&self, deadline: Duration) {
        let Some(queue) = &self.queue else { return };
        let (ack, done) = oneshot::channel();
        if queue.send(Message::Close(ack)).await.is_ok() && tokio::time::timeout(deadline, done).await.is_err() {
            tracing::error!("the decision log did not flush before the shutdown deadline");
        }
    }
}

/// While the sink fails, asks the writer to try it again every [`PROBE_INTERVAL`]; ends with it.
async fn probe(queue: mpsc::WeakSender<Message>, healthy: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let Some(queue) = queue.upgrade() else { return };
        if !healthy.load(Ordering::Acquire) && queue.send(Message::Probe).await.is_err() {
            return;
        }
    }
}

struct Writer {
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
}

enum Output {
    Stdout(std::io::Stdout),
    File { file: BufWriter<File>, written: u64 },
}

impl Writer {
    fn open(settings: &DecisionLogSettings) -> std::io::Result<Self> {
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

    fn run(mut self, mut records: mpsc::Receiver<Message>, healthy: &AtomicBool, metrics: &Metrics) {
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
    /// empty batch writes a checkpoint if records are unsigned (closing).
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
        let (durable, mut prev, mut unsigned) = (self.durable, self.prev.clone(), self.unsigned);
        let result = (|| match &mut out {
            Output::Stdout(stdout) => {
                let mut lock = stdout.lock();
                for line in &lines {
                    lock.write_all(line)?;
                }
                lock.flush()
            }
            Output::File { file, written } => {
                let mut seal = |line: &[u8], prev: &mut String| {
                    let (sealed, hash) = crate::audit::chain::seal(prev, line);
                    *written += sealed.len() as u64;
                    *prev = hash;
                    file.write_all(&sealed)
                };
                for line in &lines {
                    seal(line, &mut prev)?;
                    unsigned += 1;
                    if let Some(checkpoints) = &self.checkpoints
                        && unsigned >= checkpoints.every
                    {
                        seal(&crate::audit::chain::checkpoint(&checkpoints.key, &prev, unsigned)?, &mut prev)?;
                        unsigned = 0;
                    }
                }
                if let Some(checkpoints) = self.checkpoints.as_ref().filter(|_| closing) {
                    seal(&crate::audit::chain::checkpoint(&checkpoints.key, &prev, unsigned)?, &mut prev)?;
                    unsigned = 0;
                }
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
        Ok(())
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The log file, for appending; created readable by its owner only, as it holds full payloads.
pub fn open_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

/// The `n`th rotated file of `path`: `decisions.jsonl.1` is the newest.
fn numbered(path: &Path, n: usize) -> PathBuf {
    PathBuf::from(format!("{}.{n}", path.display()))
}

/// `log` → `log.1` → `log.2` … keeping `keep` rotated files.
fn rotate(path: &Path, keep: usize) -> std::io::Result<()> {
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

fn parse_pointer(pointer: &str) -> Vec<String> {
    pointer.split('/').skip(1).map(|token| token.replace("~1", "/").replace("~0", "~")).collect()
}

fn redact_at(value: &mut Value, path: &[String]) {
    let Some((head, rest)) = path.split_first() else {
        *value = Value::String(REDACTED.into());
        return;
    };
    match value {
        Value::Object(map) if head == "*" => map.values_mut().for_each(|v| redact_at(v, rest)),
        Value::Object(map) => {
            if let Some(v) = map.get_mut(head) {
                redact_at(v, rest);
            }
        }
        Value::Array(items) if head == "*" => items.iter_mut().for_each(|v| redact_at(v, rest)),
        Value::Array(items) => {
            if let Some(v) = head.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                redact_at(v, rest);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redaction_replaces_pointed_values_including_wildcards() {
        let mut input = json!({"request": {"destAddress": "0xabc", "destinations": [{"dstAddress": "a"}, {"dstAddress": "b"}], "a/b": 1}});
        for p in ["/request/destAddress", "/request/destinations/*/dstAddress", "/request/a~1b", "/request/missing/x"] {
            redact_at(&mut input, &parse_pointer(p));
        }
        assert_eq!(
            input,
            json!({"request": {"destAddress": "[REDACTED]", "destinations": [{"dstAddress": "[REDACTED]"}, {"dstAddress": "[REDACTED]"}], "a/b": "[REDACTED]"}})
        );
    }
}
