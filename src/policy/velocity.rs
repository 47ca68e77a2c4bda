//! `velocity.sum(key, window)` and `velocity.count(key, window)`: what approved transactions
//! recorded under `key` within `window` before this request was received — the memory behind
//! limits over time.
//!
//! Each evaluation runs with its [`Ledger`] installed on the evaluation thread: the builtins read
//! the state store through it, and it keeps what was read (for the decision log and replay) and
//! the version of every key read (for the commit's conflict check). A ledger can also serve reads
//! recorded by an earlier decision (replay, shadow evaluation). It fixes `time.now_ns()` to the
//! request's receipt. Without a ledger (Rego unit tests) the store is empty — sums are `"0"` and
//! counts `0` — and `time.now_ns()` is the clock.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use regorus::{Engine, Value};
use serde::{Deserialize, Serialize};

use crate::origin::Binding;
use crate::state::{self, StateError, StateStore, WindowTotal};

/// Longer keys are refused: a key is policy-built, and one built from a whole payload is a bug.
pub use crate::decision::MAX_KEY_BYTES;

thread_local! {
    static CURRENT: RefCell<Option<Ledger>> = const { RefCell::new(None) };
}

/// One value a policy read, as the decision log shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VelocityRead {
    /// `sum` or `count`.
    pub function: String,
    pub key: String,
    pub window: String,
    pub value: serde_json::Value,
}

/// What one evaluation read from the state store, and the moment it is taken at.
pub struct Ledger {
    /// Reads recorded when the request was first decided (replay, shadow, a fixture made from a
    /// record): served first, so the policy sees exactly what it saw then.
    recorded: Vec<VelocityRead>,
    /// Serves the reads not recorded; without it such a read fails (nothing may be made up).
    store: Option<Arc<StateStore>>,
    /// The transaction being decided: its own records never count against it.
    id: String,
    at_us: u64,
    /// What `time.now_ns()` returns: the request's receipt, so a replay sees the same clock.
    now_ns: i64,
    reads: Vec<VelocityRead>,
    totals: HashMap<(String, u64), WindowTotal>,
    /// The first version seen of each key read.
    versions: BTreeMap<String, u64>,
    failure: Option<StateError>,
    /// A read was neither recorded nor servable by a store.
    unrecorded: bool,
    /// Reads may come from the replica's copy of the store: the ledger of a decision, which
    /// checks what it read before it is answered (a replay or shadow evaluation does not).
    copy: bool,
    /// A read was answered from the replica's copy of the store ([`WindowTotal::copy`]).
    copied: bool,
    /// The origin token's one-use binding, read before the policy runs (see [`mark_origin_reuse`]).
    binding: Option<Binding>,
    /// Every call of a handler builtin, when asked for (the OPA portability check answers OPA's
    /// calls of our builtins with these).
    calls: Option<Vec<BuiltinCall>>,
}

/// One call of a handler builtin as an evaluation made it: its arguments and result (`None`:
/// undefined).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuiltinCall {
    pub name: &'static str,
    pub args: Vec<serde_json::Value>,
    pub result: Option<serde_json::Value>,
}

impl Ledger {
    /// A ledger reading `store`, for a request received at `received_at`.
    pub fn new(store: Arc<StateStore>, id: &str, received_at: DateTime<Utc>) -> Self {
        Self { copy: true, ..Self::recorded(Vec::new(), Some(store), id, received_at) }
    }

    /// A ledger serving `recorded` reads first, then `store` if there is one.
    pub fn recorded(
        recorded: Vec<VelocityRead>,
        store: Option<Arc<StateStore>>,
        id: &str,
        received_at: DateTime<Utc>,
    ) -> Self {
        Self {
            recorded,
            store,
            id: id.to_string(),
            at_us: received_at.timestamp_micros().max(0) as u64,
            now_ns: received_at.timestamp_nanos_opt().unwrap_or(i64::MAX),
            reads: Vec::new(),
            totals: HashMap::new(),
            versions: BTreeMap::new(),
            failure: None,
            unrecorded: false,
            copy: false,
            copied: false,
            binding: None,
            calls: None,
        }
    }

    /// This evaluation keeps every call of a handler builtin ([`Ledger::calls`]).
    pub fn recording_calls(mut self, record: bool) -> Self {
        self.calls = record.then(Vec::new);
        self
    }

    /// The handler builtins' calls, when recorded.
    pub fn calls(&self) -> &[BuiltinCall] {
        self.calls.as_deref().unwrap_or_default()
    }

    /// This evaluation checks whether another transaction used the origin token of `binding`.
    pub fn with_binding(mut self, binding: Option<Binding>) -> Self {
        self.binding = binding;
        self
    }

    /// The binding an approval records: read, and used by no other transaction.
    pub fn unused_binding(&self) -> Option<&Binding> {
        let binding = self.binding.as_ref()?;
        (reused(binding, &self.reads) == Some(false)).then_some(binding)
    }

    pub fn reads(&self) -> &[VelocityRead] {
        &self.reads
    }

    /// Every key read from the store, with the version the decision is based on.
    pub fn versions(&self) -> Vec<(String, u64)> {
        self.versions.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Whether a read was answered from the replica's copy: a decision that commits nothing
    /// checks the versions before it is answered ([`StateStore::unchanged`]).
    pub fn read_copy(&self) -> bool {
        self.copied
    }

    /// The store error that made a read fail, if one did.
    pub fn failure(&self) -> Option<&StateError> {
        self.failure.as_ref()
    }

    /// Whether the policy read something the record does not hold (a replay cannot be exact).
    pub fn read_unrecorded(&self) -> bool {
        self.unrecorded
    }

    fn value(
        &mut self,
        function: &'static str,
        key: &str,
        window: &str,
        duration: Duration,
    ) -> Result<serde_json::Value, StateError> {
        if let Some(read) = self.recorded.iter().find(|r| r.function == function && r.key == key && r.window == window)
        {
            return Ok(read.value.clone());
        }
        let window_us = duration.as_micros() as u64;
        let total = match self.totals.get(&(key.to_string(), window_us)) {
            Some(total) => *total,
            None => {
                let Some(store) = &self.store else {
                    self.unrecorded = true;
                    let error = StateError(format!("velocity.{function}({key:?}, {window:?}) is not in the record"));
                    self.failure = Some(error.clone());
                    return Err(error);
                };
                let since = self.at_us.saturating_sub(window_us);
                let read = if self.copy { StateStore::window_or_copy } else { StateStore::window };
                let total =
                    read(store, key, since, window_us, &self.id).inspect_err(|e| self.failure = Some(e.clone()))?;
                self.versions.entry(key.to_string()).or_insert(total.version);
                self.copied |= total.copy;
                self.totals.insert((key.to_string(), window_us), total);
                total
            }
        };
        Ok(match function {
            "sum" => serde_json::Value::from(total.sum.to_string()),
            _ => serde_json::Value::from(total.count),
        })
    }
}

/// `f` as a handler builtin named `name` that the installed ledger records when asked to.
pub fn recorded<F>(name: &'static str, mut f: F) -> impl regorus::Extension
where
    F: FnMut(Vec<Value>) -> anyhow::Result<Value> + Send + Sync + Clone + 'static,
{
    move |args: Vec<Value>| {
        let recording = CURRENT.with(|current| current.borrow().as_ref().is_some_and(|l| l.calls.is_some()));
        if !recording {
            return f(args);
        }
        let out = f(args.clone());
        CURRENT.with(|current| {
            if let Some(calls) = current.borrow_mut().as_mut().and_then(|ledger| ledger.calls.as_mut()) {
                let json = |v: &Value| serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
                let result = match &out {
                    Ok(Value::Undefined) | Err(_) => None,
                    Ok(value) => Some(json(value)),
                };
                calls.push(BuiltinCall { name, args: args.iter().map(json).collect(), result });
            }
        });
        out
    }
}

/// Runs `work` with `ledger` installed for the velocity builtins; gives the ledger back.
pub fn with_ledger<T>(ledger: Option<Ledger>, work: impl FnOnce() -> T) -> (T, Option<Ledger>) {
    CURRENT.with(|current| *current.borrow_mut() = ledger);
    let out = work();
    (out, CURRENT.with(|current| current.borrow_mut().take()))
}

pub fn register(engine: &mut Engine) -> anyhow::Result<()> {
    engine.add_extension(
        "velocity.sum".into(),
        2,
        Box::new(recorded("velocity.sum", |args: Vec<Value>| read("sum", &args))),
    )?;
    engine.add_extension(
        "velocity.count".into(),
        2,
        Box::new(recorded("velocity.count", |args: Vec<Value>| read("count", &args))),
    )?;
    // Overrides the builtin (extensions are looked up first): one instant per decision, as in OPA,
    // and that instant the request's receipt, which the decision log keeps for replay.
    engine.add_extension(
        "time.now_ns".into(),
        0,
        Box::new(recorded("time.now_ns", |_: Vec<Value>| Ok(Value::from(now_ns())))),
    )?;
    Ok(())
}

fn now_ns() -> i64 {
    CURRENT
        .with(|current| current.borrow().as_ref().map(|ledger| ledger.now_ns))
        .unwrap_or_else(|| Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX))
}

/// Whether `reads` saw another transaction approved with the token of `binding`.
pub fn reused(binding: &Binding, reads: &[VelocityRead]) -> Option<bool> {
    let read = reads.iter().find(|r| r.function == "count" && r.key == binding.key)?;
    Some(read.value != 0u64)
}

/// Sets `input.context.origin.reused` from the state store, through the installed ledger (so the
/// read is recorded for replay and versioned for the commit). A failed read fails the evaluation
/// through the ledger, as a policy's own read would.
pub fn mark_origin_reuse(mut input: Value) -> Value {
    let binding = CURRENT.with(|current| current.borrow().as_ref().and_then(|ledger| ledger.binding.clone()));
    let Some(binding) = binding else {
        return input;
    };
    let Ok(count) = read("count", &[Value::from(binding.key), Value::from(binding.window)]) else {
        return input;
    };
    if let Ok(input_map) = input.as_object_mut()
        && let Some(context) = input_map.get_mut(&Value::from("context"))
        && let Ok(context) = context.as_object_mut()
        && let Some(origin) = context.get_mut(&Value::from("origin"))
        && let Ok(origin) = origin.as_object_mut()
    {
        origin.insert(Value::from("reused"), Value::from(count != Value::from(0u64)));
    }
    input
}

fn read(function: &'static str, args: &[Value]) -> anyhow::Result<Value> {
    let (Some(Value::String(key)), Some(Value::String(window))) = (args.first(), args.get(1)) else {
        anyhow::bail!("velocity.{function}(key, window): key and window must be strings");
    };
    if key.len() > MAX_KEY_BYTES {
        anyhow::bail!("velocity.{function}: the key is longer than {MAX_KEY_BYTES} bytes");
    }
    let duration = state::parse_window(window).map_err(|e| anyhow::anyhow!("velocity.{function}: {e}"))?;
    CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        let Some(ledger) = current.as_mut() else {
            return Ok(if function == "sum" { Value::from("0") } else { Value::from(0u64) });
        };
        let value =
            ledger.value(function, key, window, duration).map_err(|e| anyhow::anyhow!("velocity.{function}: {e}"))?;
        let read =
            VelocityRead { function: function.to_string(), key: key.to_string(), window: window.to_string(), value };
        let seen = Value::from(read.value.clone());
        if !ledger.reads.contains(&read) {
            ledger.reads.push(read);
        }
        Ok(seen)
    })
}
