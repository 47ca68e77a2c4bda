//! The embedded backend: one redb file. Reads run on the caller's thread against a consistent
//! snapshot (MVCC: they never wait for the writer). Writes go to one writer thread that applies
//! every operation waiting at that moment in one transaction and one fsync (group commit), so the
//! version check and the writes of each commit are atomic and serialised. (Longer than most files:
//! the tables, the writer thread and each operation's transaction are read together.)

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use super::{
    Commit, Committed, OrFail, Record, Seen, StateError, StateSettings, StatusApplied, StatusUpdate, WindowTotal,
};
use crate::decimal::Amount;

/// (key, at µs, transaction) → amount in units of 10⁻¹⁸.
const EVENTS: TableDefinition<(&str, u64, &str), u128> = TableDefinition::new("events");
/// (key, at µs, transaction) → the key's running sum (units) and count up to and including this
/// event: a window's total is the difference of two entries, however busy the key (see
/// [`Embedded::window`]).
const TOTALS: TableDefinition<(&str, u64, &str), (u128, u64)> = TableDefinition::new("event_totals");
/// (transaction, key) → at µs: the exactly-once mark.
const RECORDED: TableDefinition<(&str, &str), u64> = TableDefinition::new("recorded");
/// key → version, bumped by every change of the key's events.
const VERSIONS: TableDefinition<&str, u64> = TableDefinition::new("versions");
/// requestId → (identity digest, first seen µs).
const REQUEST_IDS: TableDefinition<&str, (&[u8], u64)> = TableDefinition::new("request_ids");
/// txId → (the identity digest its first decision bound it to, when µs): one txId, one transaction.
const TX_IDS: TableDefinition<&str, (&[u8], u64)> = TableDefinition::new("tx_ids");
/// What a released transaction's txId is bound to instead of a digest: nothing matches it.
const ENDED: &[u8] = b"ended";
/// transaction → (revision, created µs, hold as JSON).
const HOLDS: TableDefinition<&str, (u64, u64, &str)> = TableDefinition::new("holds");
/// Fireblocks event id → when applied µs: each delivery applied once.
const WEBHOOK_EVENTS: TableDefinition<&str, u64> = TableDefinition::new("webhook_events");
/// txId → (lastUpdated ms of the status applied, when µs, its final state as JSON).
const TX_STATUS: TableDefinition<&str, (u64, u64, &str)> = TableDefinition::new("tx_status");
/// (kind, id) → (revision, expires µs (0: kept), JSON; empty: deleted): small documents.
const DOCUMENTS: TableDefinition<(&str, &str), (u64, u64, &str)> = TableDefinition::new("documents");
/// Small facts kept across restarts: the longest window ever read.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const LONGEST_WINDOW: &str = "longest_window_us";
/// Set once the running totals cover every event (a file from before them is brought up to date).
const TOTALS_BUILT: &str = "event_totals_built";

const FILE_NAME: &str = "cosigner-guard.redb";
/// Operations waiting for the writer beyond this are refused (the decision falls back).
const QUEUE_DEPTH: usize = 4096;
/// At most this many operations share one transaction.
const BATCH: usize = 256;

type Reply<T> = oneshot::Sender<Result<T, StateError>>;

enum Op {
    Commit(Commit, Reply<Committed>),
    Revert {
        id: String,
        records: Vec<(String, Amount)>,
        reply: Reply<()>,
    },
    Remember {
        request_id: String,
        tx_id: Option<String>,
        digest: [u8; 32],
        at_us: u64,
        reply: Reply<Seen>,
    },
    Prune {
        now_us: u64,
        events_before: u64,
        marks_before: u64,
        longest: u64,
        reply: Reply<()>,
    },
    PutDocument {
        kind: String,
        id: String,
        revision: u64,
        expires_us: u64,
        json: String,
        reply: Reply<bool>,
    },
    PutHold {
        id: String,
        revision: u64,
        created_us: u64,
        json: String,
        reply: Reply<bool>,
    },
    ApplyStatus(StatusUpdate, Reply<StatusApplied>),
    Release {
        tx_id: String,
        at_us: u64,
        reply: Reply<Vec<String>>,
    },
    /// Nothing to write: makes what came before durable.
    Flush(Reply<()>),
    /// The store is being dropped: the writer ends, closing the file.
    Stop,
}

impl Op {
    /// Whether the answer this operation gates must wait for the fsync: every write, since a
    /// `requestId` or `txId` forgotten in a crash could come back moving something else. Group
    /// commit shares one fsync among every operation waiting at that moment.
    fn durable(&self) -> bool {
        true
    }
}

pub struct Embedded {
    db: std::sync::Arc<Database>,
    ops: SyncSender<Op>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Embedded {
    /// Waits for the writer, so the file is closed (and may be opened again) once this returns.
    fn drop(&mut self) {
        if self.ops.send(Op::Stop).is_ok()
            && let Some(writer) = self.writer.take()
        {
            let _ = writer.join();
        }
    }
}

impl Embedded {
    /// Opens (or creates) the database in `dir`, or in memory when `dir` is `None`.
    pub fn open(dir: Option<&Path>, _settings: &StateSettings) -> Result<Self, StateError> {
        let db = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StateError(format!("cannot create {}: {e}", dir.display())))?;
                let path = dir.join(FILE_NAME);
                let db =
                    Database::create(&path).map_err(|e| StateError(format!("cannot open {}: {e}", path.display())))?;
                // What was approved, held and by whom: readable by its owner only, like the log.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| StateError(format!("cannot restrict {}: {e}", path.display())))?;
                db
            }
            None => Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).or_fail()?,
        };
        let txn = db.begin_write().or_fail()?;
        open_tables(&txn)?;
        build_totals(&txn)?;
        txn.commit().or_fail()?;
        let db = std::sync::Arc::new(db);
        let (ops, queue) = sync_channel(QUEUE_DEPTH);
        let shared = std::sync::Arc::clone(&db);
        let writer = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || write_loop(&shared, &queue))
            .or_fail()?;
        Ok(Self { db, ops, writer: Some(writer) })
    }

    pub fn longest_window_us(&self) -> Result<u64, StateError> {
        let txn = self.db.begin_read().or_fail()?;
        let meta = txn.open_table(META).or_fail()?;
        Ok(meta.get(LONGEST_WINDOW).or_fail()?.map_or(0, |v| v.value()))
    }

    /// The events of `key` after `since_us`, but `exclude`'s: from the running totals of the
    /// window's first and last events, and `exclude`'s own event — a few lookups, exact, whatever
    /// the number of events in the window.
    pub fn window(&self, key: &str, since_us: u64, exclude: &str) -> Result<WindowTotal, StateError> {
        let txn = self.db.begin_read().or_fail()?;
        let versions = txn.open_table(VERSIONS).or_fail()?;
        let version = versions.get(key).or_fail()?.map_or(0, |v| v.value());
        let mut total = WindowTotal { version, ..WindowTotal::default() };
        let totals = txn.open_table(TOTALS).or_fail()?;
        let events = txn.open_table(EVENTS).or_fail()?;
        let from = since_us.saturating_add(1);
        let mut window = totals.range((key, from, "")..(key, u64::MAX, "")).or_fail()?;
        let Some(first) = window.next().transpose().or_fail()? else { return Ok(total) };
        let last = window.next_back().transpose().or_fail()?.map_or(first.1.value(), |(_, last)| last.value());
        let (first_event, (first_sum, first_count)) = (first.0.value(), first.1.value());
        let first_units = events.get(first_event).or_fail()?.map_or(0, |v| v.value());
        let broken = || StateError(format!("the running totals of {key:?} do not add up"));
        let mut sum = last.0.checked_sub(first_sum - first_units.min(first_sum)).ok_or_else(broken)?;
        let mut count = last.1.checked_sub(first_count.saturating_sub(1)).ok_or_else(broken)?;
        // The transaction being decided never counts against itself (a retry, a signing stage).
        let recorded = txn.open_table(RECORDED).or_fail()?;
        if let Some(at) = recorded.get((exclude, key)).or_fail()?.map(|v| v.value())
            && at >= from
            && let Some(units) = events.get((key, at, exclude)).or_fail()?.map(|v| v.value())
        {
            sum = sum.checked_sub(units).ok_or_else(broken)?;
            count = count.checked_sub(1).ok_or_else(broken)?;
        }
        total.sum = Amount::from_units(sum);
        total.count = count;
        Ok(total)
    }

    pub async fn commit(&self, commit: Commit) -> Result<Committed, StateError> {
        // A commit that would write nothing — a key read has changed, or every record is already
        // there (a retry, a signing stage) — is settled by one consistent read, without the writer
        // and its fsync: versions only grow, so a changed one stays changed.
        if let Some(settled) = self.settled_by_read(&commit)? {
            return Ok(settled);
        }
        self.send(|reply| Op::Commit(commit, reply)).await
    }

    fn settled_by_read(&self, commit: &Commit) -> Result<Option<Committed>, StateError> {
        let txn = self.db.begin_read().or_fail()?;
        let versions = txn.open_table(VERSIONS).or_fail()?;
        for (key, seen) in &commit.reads {
            if versions.get(key.as_str()).or_fail()?.map_or(0, |v| v.value()) != *seen {
                return Ok(Some(Committed::Conflict));
            }
        }
        let recorded = txn.open_table(RECORDED).or_fail()?;
        for record in &commit.records {
            if recorded.get((commit.id.as_str(), record.key.as_str())).or_fail()?.is_none() {
                return Ok(None);
            }
        }
        Ok(Some(Committed::Applied { new: Vec::new() }))
    }

    pub async fn revert(&self, id: &str, records: &[&Record]) -> Result<(), StateError> {
        let records = records.iter().map(|r| (r.key.clone(), r.amount)).collect();
        self.send(|reply| Op::Revert { id: id.to_string(), records, reply }).await
    }

    pub async fn remember(
        &self,
        request_id: &str,
        tx_id: Option<&str>,
        digest: [u8; 32],
        at_us: u64,
    ) -> Result<Seen, StateError> {
        // Most ids come back (signing stage, retries): a read answers those without the writer,
        // which checks again before it inserts.
        let txn = self.db.begin_read().or_fail()?;
        let known =
            |table: TableDefinition<&str, (&[u8], u64)>, id: Option<&str>| -> Result<Option<Known>, StateError> {
                let Some(id) = id else { return Ok(Some(Known::Same)) };
                let table = txn.open_table(table).or_fail()?;
                Ok(table.get(id).or_fail()?.map(|v| Known::of(v.value().0, &digest)))
            };
        if let Some(seen) = settled(known(REQUEST_IDS, Some(request_id))?, known(TX_IDS, tx_id)?) {
            return Ok(seen);
        }
        let (request_id, tx_id) = (request_id.to_string(), tx_id.map(str::to_string));
        self.send(|reply| Op::Remember { request_id, tx_id, digest, at_us, reply }).await
    }

    pub async fn apply_status(&self, update: StatusUpdate) -> Result<StatusApplied, StateError> {
        self.send(|reply| Op::ApplyStatus(update, reply)).await
    }

    pub async fn release(&self, tx_id: &str, at_us: u64) -> Result<Vec<String>, StateError> {
        self.send(|reply| Op::Release { tx_id: tx_id.to_string(), at_us, reply }).await
    }

    pub async fn prune(&self, now_us: u64, horizon_us: u64, marks_us: u64, longest: u64) -> Result<(), StateError> {
        let (events_before, marks_before) = (now_us.saturating_sub(horizon_us), now_us.saturating_sub(marks_us));
        self.send(|reply| Op::Prune { now_us, events_before, marks_before, longest, reply }).await
    }

    pub fn hold(&self, id: &str) -> Result<Option<(u64, String)>, StateError> {
        let txn = self.db.begin_read().or_fail()?;
        let holds = txn.open_table(HOLDS).or_fail()?;
        Ok(holds.get(id).or_fail()?.map(|v| {
            let (revision, _, json) = v.value();
            (revision, json.to_string())
        }))
    }

    pub async fn put_hold(&self, id: &str, revision: u64, created_us: u64, json: String) -> Result<bool, StateError> {
        self.send(|reply| Op::PutHold { id: id.to_string(), revision, created_us, json, reply }).await
    }

    /// The document's revision (0: never written) and its JSON unless deleted or expired.
    pub fn document(&self, kind: &str, id: &str, now_us: u64) -> Result<(u64, Option<String>), StateError> {
        let txn = self.db.begin_read().or_fail()?;
        let documents = txn.open_table(DOCUMENTS).or_fail()?;
        Ok(documents.get((kind, id)).or_fail()?.map_or((0, None), |v| {
            let (revision, expires, json) = v.value();
            let live = !json.is_empty() && (expires == 0 || expires > now_us);
            (revision, live.then(|| json.to_string()))
        }))
    }

    pub async fn put_document(
        &self,
        kind: &str,
        id: &str,
        revision: u64,
        expires_us: u64,
        json: String,
    ) -> Result<bool, StateError> {
        let (kind, id) = (kind.to_string(), id.to_string());
        self.send(|reply| Op::PutDocument { kind, id, revision, expires_us, json, reply }).await
    }

    pub fn documents(&self, kind: &str) -> Result<Vec<String>, StateError> {
        let txn = self.db.begin_read().or_fail()?;
        let documents = txn.open_table(DOCUMENTS).or_fail()?;
        let mut found = Vec::new();
        for entry in documents.range((kind, "")..).or_fail()? {
            let (key, value) = entry.or_fail()?;
            if key.value().0 != kind {
                break;
            }
            let (_, expires, json) = value.value();
            if !json.is_empty() && expires == 0 {
                found.push(json.to_string());
            }
        }
        Ok(found)
    }

    pub fn holds(&self) -> Result<Vec<String>, StateError> {
        let txn = self.db.begin_read().or_fail()?;
        let holds = txn.open_table(HOLDS).or_fail()?;
        let mut found = Vec::new();
        for entry in holds.iter().or_fail()? {
            let (_, value) = entry.or_fail()?;
            let (_, created, json) = value.value();
            found.push((created, json.to_string()));
        }
        found.sort();
        Ok(found.into_iter().map(|(_, json)| json).collect())
    }

    pub async fn flush(&self) -> Result<(), StateError> {
        self.send(Op::Flush).await
    }

    pub fn probe(&self) -> Result<(), StateError> {
        self.db.begin_read().map(drop).or_fail()
    }

    async fn send<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StateError> {
        let (reply, answer) = oneshot::channel();
        self.ops.try_send(op(reply)).map_err(|e| match e {
            TrySendError::Full(_) => StateError("the writer queue is full".into()),
            TrySendError::Disconnected(_) => StateError("the writer has stopped".into()),
        })?;
        answer.await.map_err(|_| StateError("the writer has stopped".into()))?
    }
}

fn open_tables(txn: &WriteTransaction) -> Result<(), StateError> {
    txn.open_table(EVENTS).or_fail()?;
    txn.open_table(TOTALS).or_fail()?;
    txn.open_table(RECORDED).or_fail()?;
    txn.open_table(VERSIONS).or_fail()?;
    txn.open_table(REQUEST_IDS).or_fail()?;
    txn.open_table(TX_IDS).or_fail()?;
    txn.open_table(META).or_fail()?;
    txn.open_table(HOLDS).or_fail()?;
    txn.open_table(WEBHOOK_EVENTS).or_fail()?;
    txn.open_table(TX_STATUS).or_fail()?;
    txn.open_table(DOCUMENTS).or_fail()?;
    Ok(())
}

/// A finished operation's answer, sent only once its transaction is committed.
enum Done {
    Commit(Reply<Committed>, Committed),
    Put(Reply<bool>, bool),
    Remember(Reply<Seen>, Seen),
    Status(Reply<StatusApplied>, StatusApplied),
    Released(Reply<Vec<String>>, Vec<String>),
    Unit(Reply<()>),
}

impl Done {
    fn send(self, failure: Option<&StateError>) {
        fn answer<T>(reply: Reply<T>, out: T, failure: Option<&StateError>) {
            let _ = reply.send(failure.map_or(Ok(out), |e| Err(e.clone())));
        }
        match self {
            Done::Commit(reply, out) => answer(reply, out, failure),
            Done::Put(reply, out) => answer(reply, out, failure),
            Done::Unit(reply) => answer(reply, (), failure),
            Done::Remember(reply, out) => answer(reply, out, failure),
            Done::Status(reply, out) => answer(reply, out, failure),
            Done::Released(reply, out) => answer(reply, out, failure),
        }
    }
}

fn write_loop(db: &Database, queue: &Receiver<Op>) {
    loop {
        let first = match queue.recv_timeout(std::time::Duration::from_secs(1)) {
            Ok(Op::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(op) => op,
            Err(RecvTimeoutError::Timeout) => continue,
        };
        let mut batch = vec![first];
        let mut stop = false;
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(Op::Stop) => {
                    stop = true;
                    break;
                }
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let durable = batch.iter().any(Op::durable);
        let mut done = Vec::with_capacity(batch.len());
        let outcome = apply_batch(db, batch, durable, &mut done);
        if let Err(error) = &outcome {
            tracing::error!(%error, "state store write failed");
        }
        for d in done {
            d.send(outcome.as_ref().err());
        }
        if stop {
            return;
        }
    }
}

fn apply_batch(db: &Database, batch: Vec<Op>, durable: bool, done: &mut Vec<Done>) -> Result<(), StateError> {
    let mut txn = db.begin_write().or_fail()?;
    txn.set_durability(if durable { Durability::Immediate } else { Durability::None }).or_fail()?;
    for op in batch {
        done.push(match op {
            Op::Commit(commit, reply) => Done::Commit(reply, apply_commit(&txn, &commit)?),
            Op::Revert { id, records, reply } => {
                apply_revert(&txn, &id, &records)?;
                Done::Unit(reply)
            }
            Op::Remember { request_id, tx_id, digest, at_us, reply } => {
                Done::Remember(reply, apply_remember(&txn, &request_id, tx_id.as_deref(), &digest, at_us)?)
            }
            Op::Prune { now_us, events_before, marks_before, longest, reply } => {
                apply_prune(&txn, now_us, events_before, marks_before, longest)?;
                Done::Unit(reply)
            }
            Op::PutDocument { kind, id, revision, expires_us, json, reply } => {
                Done::Put(reply, apply_put_document(&txn, (&kind, &id), revision, expires_us, &json)?)
            }
            Op::PutHold { id, revision, created_us, json, reply } => {
                Done::Put(reply, apply_put_hold(&txn, &id, revision, created_us, &json)?)
            }
            Op::ApplyStatus(update, reply) => Done::Status(reply, apply_status(&txn, &update)?),
            Op::Release { tx_id, at_us, reply } => Done::Released(reply, apply_release(&txn, &tx_id, at_us)?),
            Op::Flush(reply) => Done::Unit(reply),
            Op::Stop => continue,
        });
    }
    txn.commit().or_fail()
}

fn apply_commit(txn: &WriteTransaction, commit: &Commit) -> Result<Committed, StateError> {
    let mut versions = txn.open_table(VERSIONS).or_fail()?;
    for (key, seen) in &commit.reads {
        let now = versions.get(key.as_str()).or_fail()?.map_or(0, |v| v.value());
        if now != *seen {
            return Ok(Committed::Conflict);
        }
    }
    let mut recorded = txn.open_table(RECORDED).or_fail()?;
    let mut events = Events::open(txn)?;
    let mut new = Vec::new();
    for record in &commit.records {
        let key = record.key.as_str();
        if recorded.get((commit.id.as_str(), key)).or_fail()?.is_some() {
            continue;
        }
        recorded.insert((commit.id.as_str(), key), commit.at_us).or_fail()?;
        events.add((key, commit.at_us, commit.id.as_str()), record.amount.units())?;
        bump(&mut versions, key)?;
        new.push(record.key.clone());
    }
    Ok(Committed::Applied { new })
}

fn apply_revert(txn: &WriteTransaction, id: &str, records: &[(String, Amount)]) -> Result<(), StateError> {
    let mut versions = txn.open_table(VERSIONS).or_fail()?;
    let mut recorded = txn.open_table(RECORDED).or_fail()?;
    let mut events = Events::open(txn)?;
    for (key, _) in records {
        let at = recorded.remove((id, key.as_str())).or_fail()?.map(|v| v.value());
        if let Some(at) = at {
            events.remove((key.as_str(), at, id))?;
            bump(&mut versions, key)?;
        }
    }
    Ok(())
}

fn apply_status(txn: &WriteTransaction, update: &StatusUpdate) -> Result<StatusApplied, StateError> {
    let mut events = txn.open_table(WEBHOOK_EVENTS).or_fail()?;
    if events.get(update.event_id.as_str()).or_fail()?.is_some() {
        return Ok(StatusApplied::Duplicate);
    }
    events.insert(update.event_id.as_str(), update.at_us).or_fail()?;
    let mut statuses = txn.open_table(TX_STATUS).or_fail()?;
    let last = statuses.get(update.tx_id.as_str()).or_fail()?.map(|v| v.value().0);
    if last.is_some_and(|last| last >= update.last_updated_ms) {
        return Ok(StatusApplied::Stale);
    }
    statuses.insert(update.tx_id.as_str(), (update.last_updated_ms, update.at_us, update.json.as_str())).or_fail()?;
    let released = if update.release { apply_release(txn, &update.tx_id, update.at_us)? } else { Vec::new() };
    Ok(StatusApplied::Applied { released })
}

/// Takes transaction `tx_id`'s events out of their keys (not its marks: it never counts again),
/// except an origin token's binding, and marks its txId ended. Idempotent.
fn apply_release(txn: &WriteTransaction, tx_id: &str, at_us: u64) -> Result<Vec<String>, StateError> {
    txn.open_table(TX_IDS).or_fail()?.insert(tx_id, (ENDED, at_us)).or_fail()?;
    let recorded = txn.open_table(RECORDED).or_fail()?;
    let mut marks = Vec::new();
    for entry in recorded.range((tx_id, "")..).or_fail()? {
        let (mark, at) = entry.or_fail()?;
        let (id, key) = mark.value();
        if id != tx_id {
            break;
        }
        if !key.starts_with(crate::origin::JTI_KEY_PREFIX) {
            marks.push((key.to_string(), at.value()));
        }
    }
    let mut events = Events::open(txn)?;
    let mut versions = txn.open_table(VERSIONS).or_fail()?;
    let mut released = Vec::new();
    for (key, at) in marks {
        if events.remove((key.as_str(), at, tx_id))? {
            bump(&mut versions, &key)?;
            released.push(key);
        }
    }
    Ok(released)
}

type EventKey<'a> = (&'a str, u64, &'a str);

/// The events table with its running totals, changed together.
struct Events<'t> {
    events: redb::Table<'t, EventKey<'static>, u128>,
    totals: redb::Table<'t, EventKey<'static>, (u128, u64)>,
}

impl<'t> Events<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, StateError> {
        Ok(Self { events: txn.open_table(EVENTS).or_fail()?, totals: txn.open_table(TOTALS).or_fail()? })
    }

    /// Adds an event; its running total follows the one before it, and the key's later events
    /// (a decision committed after a later one) carry it too.
    fn add(&mut self, event: EventKey<'_>, units: u128) -> Result<(), StateError> {
        let (key, _, _) = event;
        self.events.insert(event, units).or_fail()?;
        let before = self.totals.range((key, 0, "")..event).or_fail()?.next_back().transpose().or_fail();
        let (sum, count) = before?.map_or((0, 0), |(_, total)| total.value());
        let sum = sum.checked_add(units).ok_or_else(|| StateError(format!("the sum under {key:?} overflows")))?;
        self.totals.insert(event, (sum, count + 1)).or_fail()?;
        self.shift_after(event, |(sum, count)| Some((sum.checked_add(units)?, count + 1)))
    }

    /// Removes an event, if there; whether it was.
    fn remove(&mut self, event: EventKey<'_>) -> Result<bool, StateError> {
        let Some(units) = self.events.remove(event).or_fail()?.map(|v| v.value()) else { return Ok(false) };
        self.totals.remove(event).or_fail()?;
        self.shift_after(event, |(sum, count)| Some((sum.checked_sub(units)?, count.checked_sub(1)?)))?;
        Ok(true)
    }

    fn shift_after(
        &mut self,
        event: EventKey<'_>,
        change: impl Fn((u128, u64)) -> Option<(u128, u64)>,
    ) -> Result<(), StateError> {
        use std::ops::Bound::Excluded;
        let (key, _, _) = event;
        let mut later = Vec::new();
        for entry in self.totals.range::<EventKey<'_>>((Excluded(event), Excluded((key, u64::MAX, "")))).or_fail()? {
            let (at, total) = entry.or_fail()?;
            let (_, at, id) = at.value();
            later.push((at, id.to_string(), total.value()));
        }
        for (at, id, total) in later {
            let total =
                change(total).ok_or_else(|| StateError(format!("the running totals of {key:?} do not add up")))?;
            self.totals.insert((key, at, id.as_str()), total).or_fail()?;
        }
        Ok(())
    }
}

/// Brings the running totals up to date with the events of a file written before them, once.
fn build_totals(txn: &WriteTransaction) -> Result<(), StateError> {
    let mut meta = txn.open_table(META).or_fail()?;
    if meta.get(TOTALS_BUILT).or_fail()?.is_some() {
        return Ok(());
    }
    let events = txn.open_table(EVENTS).or_fail()?;
    let mut totals = txn.open_table(TOTALS).or_fail()?;
    let mut running: Option<(String, u128, u64)> = None;
    for entry in events.iter().or_fail()? {
        let (event, units) = entry.or_fail()?;
        let (key, at, id) = event.value();
        let (sum, count) = match &running {
            Some((last, sum, count)) if last == key => (sum.saturating_add(units.value()), count + 1),
            _ => (units.value(), 1),
        };
        totals.insert((key, at, id), (sum, count)).or_fail()?;
        running = Some((key.to_string(), sum, count));
    }
    meta.insert(TOTALS_BUILT, 1).or_fail()?;
    Ok(())
}

fn bump(versions: &mut redb::Table<&str, u64>, key: &str) -> Result<(), StateError> {
    let next = versions.get(key).or_fail()?.map_or(0, |v| v.value()) + 1;
    versions.insert(key, next).or_fail()?;
    Ok(())
}

fn apply_put_hold(
    txn: &WriteTransaction,
    id: &str,
    revision: u64,
    created_us: u64,
    json: &str,
) -> Result<bool, StateError> {
    let mut holds = txn.open_table(HOLDS).or_fail()?;
    let stored = holds.get(id).or_fail()?.map_or(0, |v| v.value().0);
    if stored != revision {
        return Ok(false);
    }
    holds.insert(id, (revision + 1, created_us, json)).or_fail()?;
    Ok(true)
}

/// Compare-and-set on the revision, which keeps counting across deletions (a deleted document
/// stays as an empty tombstone until pruned), so a stale writer never overwrites a new one.
fn apply_put_document(
    txn: &WriteTransaction,
    key: (&str, &str),
    revision: u64,
    expires_us: u64,
    json: &str,
) -> Result<bool, StateError> {
    let mut documents = txn.open_table(DOCUMENTS).or_fail()?;
    let stored = documents.get(key).or_fail()?.map_or(0, |v| v.value().0);
    if stored != revision {
        return Ok(false);
    }
    documents.insert(key, (revision + 1, expires_us, json)).or_fail()?;
    Ok(true)
}

/// What an id already known is bound to, against the request's identity.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Known {
    Same,
    Different,
    /// A txId whose transaction ended (its records released).
    Ended,
}

impl Known {
    fn of(bound: &[u8], digest: &[u8; 32]) -> Self {
        if bound == ENDED {
            Known::Ended
        } else if bound == digest.as_slice() {
            Known::Same
        } else {
            Known::Different
        }
    }
}

/// What the ids already known say (a missing txId counts as the same): the answer, unless one of
/// them must be bound first.
fn settled(request_id: Option<Known>, tx_id: Option<Known>) -> Option<Seen> {
    match (request_id, tx_id) {
        (Some(Known::Different), _) => Some(Seen::Different),
        (_, Some(Known::Ended)) => Some(Seen::TxEnded),
        (_, Some(Known::Different)) => Some(Seen::TxIdReused),
        (Some(Known::Same), Some(Known::Same)) => Some(Seen::Same),
        _ => None,
    }
}

fn apply_remember(
    txn: &WriteTransaction,
    request_id: &str,
    tx_id: Option<&str>,
    digest: &[u8; 32],
    at_us: u64,
) -> Result<Seen, StateError> {
    let mut ids = txn.open_table(REQUEST_IDS).or_fail()?;
    let mut txs = txn.open_table(TX_IDS).or_fail()?;
    let known_request = ids.get(request_id).or_fail()?.map(|v| Known::of(v.value().0, digest));
    let known_tx = match tx_id {
        Some(tx_id) => txs.get(tx_id).or_fail()?.map(|v| Known::of(v.value().0, digest)),
        None => Some(Known::Same),
    };
    // A refused request binds nothing: its ids stay bound to what they first came with.
    if let Some(seen) = settled(known_request, known_tx) {
        return Ok(seen);
    }
    if known_request.is_none() {
        ids.insert(request_id, (digest.as_slice(), at_us)).or_fail()?;
    }
    if let (Some(tx_id), None) = (tx_id, known_tx) {
        txs.insert(tx_id, (digest.as_slice(), at_us)).or_fail()?;
    }
    Ok(if known_request.is_none() { Seen::First } else { Seen::Same })
}

fn apply_prune(
    txn: &WriteTransaction,
    now_us: u64,
    events_before: u64,
    marks_before: u64,
    longest: u64,
) -> Result<(), StateError> {
    // Running totals stay right when the oldest events go: a window takes differences.
    txn.open_table(TOTALS).or_fail()?.retain(|(_, at, _), _| at >= events_before).or_fail()?;
    let mut events = txn.open_table(EVENTS).or_fail()?;
    events.retain(|(_, at, _), _| at >= events_before).or_fail()?;
    // A key left with no events forgets its version too (a reader that saw the old version then
    // fails its commit and evaluates again: safe, and the table stays bounded).
    let has_events = |key: &str| -> Result<bool, StateError> {
        let mut range = events.range((key, 0, "")..).or_fail()?;
        Ok(range.next().transpose().or_fail()?.is_some_and(|(event, _)| event.value().0 == key))
    };
    let mut versions = txn.open_table(VERSIONS).or_fail()?;
    let mut idle = Vec::new();
    for entry in versions.iter().or_fail()? {
        let (key, _) = entry.or_fail()?;
        if !has_events(key.value())? {
            idle.push(key.value().to_string());
        }
    }
    for key in idle {
        versions.remove(key.as_str()).or_fail()?;
    }
    txn.open_table(RECORDED).or_fail()?.retain(|_, at| at >= marks_before).or_fail()?;
    txn.open_table(REQUEST_IDS).or_fail()?.retain(|_, (_, at)| at >= marks_before).or_fail()?;
    txn.open_table(TX_IDS).or_fail()?.retain(|_, (_, at)| at >= marks_before).or_fail()?;
    txn.open_table(HOLDS).or_fail()?.retain(|_, (_, created, _)| created >= marks_before).or_fail()?;
    txn.open_table(WEBHOOK_EVENTS).or_fail()?.retain(|_, at| at >= marks_before).or_fail()?;
    txn.open_table(TX_STATUS).or_fail()?.retain(|_, (_, at, _)| at >= marks_before).or_fail()?;
    txn.open_table(DOCUMENTS).or_fail()?.retain(|_, (_, expires, _)| expires == 0 || expires >= now_us).or_fail()?;
    let mut meta = txn.open_table(META).or_fail()?;
    let known = meta.get(LONGEST_WINDOW).or_fail()?.map_or(0, |v| v.value());
    if longest > known {
        meta.insert(LONGEST_WINDOW, longest).or_fail()?;
    }
    Ok(())
}
