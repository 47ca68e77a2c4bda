//! Memory across requests: what approved transactions recorded (for `velocity.*` limits over
//! time), the identity each `requestId` first came with (for the replay guard), and the holds
//! waiting for approvers (compare-and-set on a revision).
//!
//! Two backends behind one interface: an embedded database (redb, one file, the default) and
//! Redis (shared by replicas). Both give the same guarantees:
//! - **exactly once**: a record is kept once per (transaction, key); the same transaction coming
//!   back (retry, signing stage, another Co-signer) adds nothing, and its own records are never
//!   counted against it, so it is decided as it was the first time;
//! - **no lost race**: a decision commits only if every key it read is unchanged since (a version
//!   per key, compared and bumped atomically); otherwise it is evaluated again — optimistic
//!   concurrency, because the keys a policy reads are known only once it has run;
//! - **bounded**: events older than the prune horizon (the longest window in use, at least
//!   `state.retention`) are removed.

mod embedded;
mod redis;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::decimal::Amount;
use crate::decision::FallbackAction;

pub const MICROS_PER_SECOND: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A redb file under this directory.
    Embedded {
        dir: PathBuf,
    },
    /// An in-memory redb: the test runner's store, empty at the start of each case.
    Memory,
    Redis {
        url: String,
        prefix: String,
    },
}

#[derive(Debug, Clone)]
pub struct StateSettings {
    pub backend: Backend,
    /// Events are kept at least this long, whatever windows the policies use.
    pub retention: Duration,
    /// How long a `requestId`'s identity (and a transaction's "recorded" mark) is remembered:
    /// the Co-signer retries for about an hour by default, up to 48 hours.
    pub request_id_ttl: Duration,
    /// The answer when the store cannot be read or written (RETRY: the Co-signer asks again).
    pub on_error: FallbackAction,
    /// Budget of one store operation.
    pub timeout: Duration,
}

impl Default for StateSettings {
    fn default() -> Self {
        Self {
            backend: Backend::Memory,
            retention: Duration::from_secs(31 * 24 * 3600),
            request_id_ttl: Duration::from_secs(48 * 3600),
            on_error: FallbackAction::Retry,
            timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("state store: {0}")]
pub struct StateError(pub String);

/// Any backend error as a [`StateError`].
pub(crate) trait OrFail<T> {
    fn or_fail(self) -> Result<T, StateError>;
}

impl<T, E: std::fmt::Display> OrFail<T> for Result<T, E> {
    fn or_fail(self) -> Result<T, StateError> {
        self.map_err(|e| StateError(e.to_string()))
    }
}

pub use crate::decision::Record;

/// The approved events of one key inside a window, and the key's version when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowTotal {
    pub sum: Amount,
    pub count: u64,
    pub version: u64,
    /// Answered from the replica's copy, not the store: see [`StateStore::unchanged`].
    pub copy: bool,
}

/// An approved decision's writes: valid only while every key read still has the version seen.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The transaction (`txId`; `requestId` for configuration changes).
    pub id: String,
    pub at_us: u64,
    /// Every key the decision read, with the version it saw.
    pub reads: Vec<(String, u64)>,
    pub records: Vec<Record>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// Applied; these keys were newly recorded (the others already held this transaction).
    Applied { new: Vec<String> },
    /// A key read has changed since: evaluate again.
    Conflict,
}

/// A transaction's status from Fireblocks (a webhook), to keep with its records; `release` takes
/// its records out of every window from now on.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    /// The delivery's event id: an id seen before changes nothing.
    pub event_id: String,
    pub tx_id: String,
    /// Fireblocks' `lastUpdated` (ms): a status older than the last one applied changes nothing.
    pub last_updated_ms: u64,
    /// The transaction's final state as kept (status, subStatus, txHash, fee, net amount).
    pub json: String,
    pub release: bool,
    pub at_us: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusApplied {
    /// This event id was applied before (a repeated delivery, or another replica's).
    Duplicate,
    /// A later status of the transaction was applied already (deliveries arrive out of order).
    Stale,
    /// Applied; these keys' records of the transaction no longer count.
    Applied { released: Vec<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    First,
    /// The same identity again: a retry, another stage, another Co-signer.
    Same,
    /// This `requestId` came before with another identity.
    Different,
    /// This `txId` was bound to another identity by an earlier decision (whatever its requestId).
    TxIdReused,
    /// This `txId`'s records were released: it ended in Fireblocks, or was released by hand.
    TxEnded,
}

/// What `/status` shows of the store.
#[derive(Debug, Clone, Serialize)]
pub struct StateStatus {
    pub backend: &'static str,
    pub up: bool,
    pub last_error: Option<String>,
    pub horizon_seconds: u64,
}

enum Store {
    Embedded(embedded::Embedded),
    Redis(Box<redis::Shared>),
}

pub struct StateStore {
    store: Store,
    settings: StateSettings,
    up: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// The longest window any read asked for, in µs (the prune horizon when above retention).
    longest_window_us: AtomicU64,
}

impl StateStore {
    /// Opens the backend. Redis connects lazily: a server that is down at start-up makes the
    /// store report down until it is back, it does not stop the handler.
    pub fn open(settings: StateSettings) -> Result<Self, StateError> {
        let store = match &settings.backend {
            Backend::Embedded { dir } => Store::Embedded(embedded::Embedded::open(Some(dir), &settings)?),
            Backend::Memory => Store::Embedded(embedded::Embedded::open(None, &settings)?),
            Backend::Redis { url, prefix } => {
                Store::Redis(Box::new(redis::Shared::open(url, prefix, settings.timeout)?))
            }
        };
        let longest = match &store {
            Store::Embedded(db) => db.longest_window_us()?,
            Store::Redis(_) => 0,
        };
        Ok(Self {
            store,
            settings,
            up: AtomicBool::new(true),
            last_error: Mutex::new(None),
            longest_window_us: AtomicU64::new(longest),
        })
    }

    /// An empty in-memory store (fixtures, policy tools).
    pub fn in_memory() -> Result<Self, StateError> {
        Self::open(StateSettings::default())
    }

    pub fn settings(&self) -> &StateSettings {
        &self.settings
    }

    pub fn backend_name(&self) -> &'static str {
        match (&self.store, &self.settings.backend) {
            (Store::Redis(_), _) => "redis",
            (_, Backend::Memory) => "memory",
            _ => "embedded",
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn status(&self) -> StateStatus {
        StateStatus {
            backend: self.backend_name(),
            up: self.is_up(),
            last_error: self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            horizon_seconds: self.horizon_us() / MICROS_PER_SECOND,
        }
    }

    /// Events older than this are pruned.
    pub fn horizon_us(&self) -> u64 {
        let retention = self.settings.retention.as_micros() as u64;
        retention.max(self.longest_window_us.load(Ordering::Relaxed))
    }

    /// The sum and count of `key`'s events after `since_us`, leaving out transaction `exclude`.
    /// Blocking: called by the `velocity.*` builtins on an evaluation thread.
    pub fn window(&self, key: &str, since_us: u64, window_us: u64, exclude: &str) -> Result<WindowTotal, StateError> {
        self.read_window(key, since_us, window_us, exclude, false)
    }

    /// [`Self::window`], or the replica's copy of it (Redis): for a decision, which checks what it
    /// read before it is answered (its commit, or [`Self::unchanged`]).
    pub fn window_or_copy(
        &self,
        key: &str,
        since_us: u64,
        window_us: u64,
        exclude: &str,
    ) -> Result<WindowTotal, StateError> {
        self.read_window(key, since_us, window_us, exclude, true)
    }

    fn read_window(
        &self,
        key: &str,
        since_us: u64,
        window_us: u64,
        exclude: &str,
        copy: bool,
    ) -> Result<WindowTotal, StateError> {
        self.longest_window_us.fetch_max(window_us, Ordering::Relaxed);
        let result = match &self.store {
            Store::Embedded(db) => db.window(key, since_us, exclude),
            Store::Redis(redis) => redis.window(key, since_us, exclude, copy),
        };
        self.observe(result)
    }

    /// Applies `commit` atomically if none of its reads changed.
    pub async fn commit(&self, commit: Commit) -> Result<Committed, StateError> {
        let horizon = self.horizon_us();
        let marks = self.marks_ttl_us();
        let result = match &self.store {
            Store::Embedded(db) => db.commit(commit).await,
            Store::Redis(redis) => redis.commit(&commit, horizon, marks).await,
        };
        self.observe(result)
    }

    /// Whether every key read is still at the version seen. A decision that read the replica's
    /// copy of a key ([`WindowTotal::copy`]) and commits nothing asks before it is answered (an
    /// approval's commit checks the versions itself).
    pub async fn unchanged(&self, reads: &[(String, u64)]) -> Result<bool, StateError> {
        let result = match &self.store {
            Store::Embedded(_) => Ok(true),
            Store::Redis(redis) => redis.unchanged(reads).await,
        };
        self.observe(result)
    }

    /// Takes back the records `new` of transaction `id` (its answer could not be given).
    pub async fn revert(&self, id: &str, records: &[Record], new: &[String]) -> Result<(), StateError> {
        let undo: Vec<&Record> = records.iter().filter(|r| new.contains(&r.key)).collect();
        if undo.is_empty() {
            return Ok(());
        }
        let result = match &self.store {
            Store::Embedded(db) => db.revert(id, &undo).await,
            Store::Redis(redis) => redis.revert(id, &undo).await,
        };
        self.observe(result)
    }

    /// Applies a transaction's status from Fireblocks atomically, at most once per event id and
    /// never over a later status; a releasing status takes the transaction's records out of every
    /// window (an origin token's one-use binding excepted: a token moves one transaction, even one
    /// that failed). The transaction is marked ended: its txId is refused from then on
    /// ([`Seen::TxEnded`]), since no limit counts it any more.
    pub async fn apply_status(&self, update: StatusUpdate) -> Result<StatusApplied, StateError> {
        let keep = self.marks_ttl_us();
        let result = match &self.store {
            Store::Embedded(db) => db.apply_status(update).await,
            Store::Redis(redis) => redis.apply_status(Some(&update), &update.tx_id, update.release, keep).await,
        };
        self.observe(result)
    }

    /// Releases transaction `tx_id`'s records by hand (a workspace without webhooks); the keys
    /// released, none if nothing was left to release.
    pub async fn release(&self, tx_id: &str) -> Result<Vec<String>, StateError> {
        let keep = self.marks_ttl_us();
        let now = chrono::Utc::now().timestamp_micros().max(0) as u64;
        let result = match &self.store {
            Store::Embedded(db) => db.release(tx_id, now).await,
            Store::Redis(redis) => match redis.apply_status(None, tx_id, true, keep).await {
                Ok(StatusApplied::Applied { released }) => Ok(released),
                Ok(_) => Ok(Vec::new()),
                Err(e) => Err(e),
            },
        };
        self.observe(result)
    }

    /// Remembers the identity digest `request_id` — and a transaction's `tx_id` — first came
    /// with, durably before it answers.
    pub async fn remember(
        &self,
        request_id: &str,
        tx_id: Option<&str>,
        digest: [u8; 32],
        at_us: u64,
    ) -> Result<Seen, StateError> {
        let ttl = self.settings.request_id_ttl;
        let result = match &self.store {
            Store::Embedded(db) => db.remember(request_id, tx_id, digest, at_us).await,
            Store::Redis(redis) => redis.remember(request_id, tx_id, digest, ttl).await,
        };
        self.observe(result)
    }

    /// The hold of transaction `id` with its revision (for [`StateStore::put_hold`]). The store
    /// keeps holds as JSON documents without knowing their type (see `crate::holds`).
    pub async fn hold<T: serde::de::DeserializeOwned>(&self, id: &str) -> Result<Option<(u64, T)>, StateError> {
        let result = match &self.store {
            Store::Embedded(db) => db.hold(id),
            Store::Redis(redis) => redis.hold(id).await,
        };
        let found = self.observe(result)?;
        found.map(|(revision, json)| Ok((revision, serde_json::from_str(&json).or_fail()?))).transpose()
    }

    /// Writes the hold `id` (created at `created_us`, kept as long as request marks) if its stored
    /// revision is still `revision` (0: not there yet); false if not.
    pub async fn put_hold(
        &self,
        id: &str,
        created_us: u64,
        hold: &impl Serialize,
        revision: u64,
    ) -> Result<bool, StateError> {
        let json = serde_json::to_string(hold).or_fail()?;
        let keep = self.marks_ttl_us();
        let result = match &self.store {
            Store::Embedded(db) => db.put_hold(id, revision, created_us, json).await,
            Store::Redis(redis) => redis.put_hold(id, revision, created_us, &json, keep).await,
        };
        self.observe(result)
    }

    /// Every hold kept, oldest first.
    pub async fn holds<T: serde::de::DeserializeOwned>(&self) -> Result<Vec<T>, StateError> {
        let result = match &self.store {
            Store::Embedded(db) => db.holds(),
            Store::Redis(redis) => redis.holds().await,
        };
        self.observe(result)?.iter().map(|json| serde_json::from_str(json).or_fail()).collect()
    }

    /// A small document kept beside the holds (the console's approvers, invitations, sessions):
    /// its revision (0: never written) and its value, unless deleted or expired.
    pub async fn document<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        id: &str,
    ) -> Result<(u64, Option<T>), StateError> {
        let result = match &self.store {
            Store::Embedded(db) => db.document(kind, id, now_us()),
            Store::Redis(redis) => redis.document(kind, id).await,
        };
        let (revision, json) = self.observe(result)?;
        Ok((revision, json.map(|json| serde_json::from_str(&json).or_fail()).transpose()?))
    }

    /// Writes (`Some`) or deletes (`None`) document `id` of `kind` if its revision is still
    /// `revision`; it is gone after `expires_us` (µs since the epoch, 0: kept). False if not.
    pub async fn put_document(
        &self,
        kind: &str,
        id: &str,
        document: Option<&impl Serialize>,
        revision: u64,
        expires_us: u64,
    ) -> Result<bool, StateError> {
        let json = document.map(serde_json::to_string).transpose().or_fail()?.unwrap_or_default();
        // A tombstone outlives in-flight writers that read the deleted revision.
        let expires_us = if json.is_empty() { now_us() + 86_400_000_000 } else { expires_us };
        let result = match &self.store {
            Store::Embedded(db) => db.put_document(kind, id, revision, expires_us, json).await,
            Store::Redis(redis) => redis.put_document(kind, id, revision, expires_us, &json).await,
        };
        self.observe(result)
    }

    /// Every document of `kind` kept without expiry (the approvers), in no particular order;
    /// expiring ones (sessions, ceremonies, invitations) are only looked up by id.
    pub async fn documents<T: serde::de::DeserializeOwned>(&self, kind: &str) -> Result<Vec<T>, StateError> {
        let result = match &self.store {
            Store::Embedded(db) => db.documents(kind),
            Store::Redis(redis) => redis.documents(kind).await,
        };
        self.observe(result)?.iter().map(|json| serde_json::from_str(json).or_fail()).collect()
    }

    /// Checks the backend is reachable; what the recovery probe runs while the store is down.
    pub async fn probe(&self) -> Result<(), StateError> {
        let result = match &self.store {
            Store::Embedded(db) => db.probe(),
            Store::Redis(redis) => redis.probe().await,
        };
        self.observe(result)
    }

    /// Makes everything written so far durable (the remembered request ids ride on the next
    /// durable commit otherwise). At shutdown.
    pub async fn close(&self) {
        if let Store::Embedded(db) = &self.store
            && let Err(error) = db.flush().await
        {
            tracing::warn!(%error, "the state store could not be flushed at shutdown");
        }
    }

    /// Removes what is past the horizon (embedded; Redis prunes each key as it is written).
    pub async fn prune(&self, now_us: u64) -> Result<(), StateError> {
        let horizon = self.horizon_us();
        let marks = self.marks_ttl_us();
        let longest = self.longest_window_us.load(Ordering::Relaxed);
        let result = match &self.store {
            Store::Embedded(db) => db.prune(now_us, horizon, marks, longest).await,
            Store::Redis(_) => Ok(()),
        };
        self.observe(result)
    }

    /// Runs for the life of the server: probes a failing store every second until it answers, so
    /// it recovers without traffic (a load balancer may have taken the instance out), prunes
    /// every minute, and reports whether the store is up after each round.
    pub async fn upkeep(self: Arc<Self>, report: impl Fn(bool)) {
        if let Err(error) = self.probe().await {
            tracing::warn!(%error, "the state store does not answer yet");
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for round in 0u64.. {
            tick.tick().await;
            if !self.is_up() {
                let _ = self.probe().await;
            }
            if round % 60 == 0 {
                let now = chrono::Utc::now().timestamp_micros().max(0) as u64;
                if let Err(error) = self.prune(now).await {
                    tracing::warn!(%error, "pruning the state store failed");
                }
            }
            report(self.is_up());
        }
    }

    /// Transactions stay marked "recorded" at least as long as their requests may come back.
    fn marks_ttl_us(&self) -> u64 {
        self.horizon_us().max(self.settings.request_id_ttl.as_micros() as u64)
    }

    fn observe<T>(&self, result: Result<T, StateError>) -> Result<T, StateError> {
        match &result {
            Ok(_) => {
                if !self.up.swap(true, Ordering::AcqRel) {
                    tracing::info!(backend = self.backend_name(), "state store is back");
                }
            }
            Err(error) => {
                if self.up.swap(false, Ordering::AcqRel) {
                    tracing::error!(backend = self.backend_name(), %error, "state store failing");
                }
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.0.clone());
            }
        }
        result
    }
}

/// Parses a window: a whole number and a unit, `s`, `m`, `h` or `d` (`"90s"`, `"24h"`, `"7d"`).
/// Why a window (`"24h"`) is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("window {0:?}: expected a whole number and a unit s, m, h or d (\"90s\", \"24h\", \"7d\")")]
    Malformed(String),
    #[error("window {0:?} must be longer than zero")]
    Zero(String),
    #[error("window {0:?} is longer than the longest allowed, 400d")]
    TooLong(String),
}

pub fn parse_window(text: &str) -> Result<Duration, WindowError> {
    let bad = || WindowError::Malformed(text.to_string());
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => Some(number),
        "m" => number.checked_mul(60),
        "h" => number.checked_mul(3600),
        "d" => number.checked_mul(86_400),
        _ => return Err(bad()),
    };
    match seconds {
        Some(0) => Err(WindowError::Zero(text.to_string())),
        Some(s) if s <= MAX_WINDOW_SECONDS => Ok(Duration::from_secs(s)),
        _ => Err(WindowError::TooLong(text.to_string())),
    }
}

const MAX_WINDOW_SECONDS: u64 = 400 * 86_400;

#[cfg(test)]
mod tests;

fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}
