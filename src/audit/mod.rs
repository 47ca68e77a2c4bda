//! The decision log: one JSON line for every request that reached a decision or was refused, to
//! stdout or to a size-rotated file. In durable mode a record is on disk (fsync) before its answer
//! leaves; the writer batches records so one fsync covers every request waiting at that moment.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

pub mod chain;
pub mod records;
mod writer;

pub use writer::open_file;
use writer::*;

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
mod tests;
