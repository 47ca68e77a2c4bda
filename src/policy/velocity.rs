//! `velocity.sum(key, window)` and `velocity.count(key, window)`: what approved transactions
//! recorded under `key` within `window` before this request was received — the memory behind
//! limits over time.
//!
//! Each evaluation runs with its [`Ledger`] installed on the evaluation thread: the builtins read
//! the state store through it, and it keeps what was read (for the decision log and replay) and
//! the version of every key read (for the commit's conflict check). Without a ledger (Rego unit
//! tests) the store is empty: sums are `"0"` and counts `0`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use regorus::{Engine, Value};
use serde::Serialize;

use crate::state::{self, StateError, StateStore, WindowTotal};

/// Longer keys are refused: a key is policy-built, and one built from a whole payload is a bug.
pub const MAX_KEY_BYTES: usize = 512;

thread_local! {
    static CURRENT: RefCell<Option<Ledger>> = const { RefCell::new(None) };
}

/// One value a policy read, as the decision log shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VelocityRead {
    pub function: &'static str,
    pub key: String,
    pub window: String,
    pub value: serde_json::Value,
}

/// What one evaluation read from the state store.
pub struct Ledger {
    store: Arc<StateStore>,
    /// The transaction being decided: its own records never count against it.
    id: String,
    at_us: u64,
    reads: Vec<VelocityRead>,
    totals: HashMap<(String, u64), WindowTotal>,
    /// The first version seen of each key read.
    versions: BTreeMap<String, u64>,
    failure: Option<StateError>,
}

impl Ledger {
    pub fn new(store: Arc<StateStore>, id: &str, at_us: u64) -> Self {
        Self {
            store,
            id: id.to_string(),
            at_us,
            reads: Vec::new(),
            totals: HashMap::new(),
            versions: BTreeMap::new(),
            failure: None,
        }
    }

    pub fn reads(&self) -> &[VelocityRead] {
        &self.reads
    }

    /// Every key read, with the version the decision is based on.
    pub fn versions(&self) -> Vec<(String, u64)> {
        self.versions.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// The store error that made a read fail, if one did.
    pub fn failure(&self) -> Option<&StateError> {
        self.failure.as_ref()
    }

    fn total(&mut self, key: &str, window: Duration) -> Result<WindowTotal, StateError> {
        let window_us = window.as_micros() as u64;
        if let Some(total) = self.totals.get(&(key.to_string(), window_us)) {
            return Ok(*total);
        }
        let since = self.at_us.saturating_sub(window_us);
        let total =
            self.store.window(key, since, window_us, &self.id).inspect_err(|e| self.failure = Some(e.clone()))?;
        self.versions.entry(key.to_string()).or_insert(total.version);
        self.totals.insert((key.to_string(), window_us), total);
        Ok(total)
    }
}

/// Runs `work` with `ledger` installed for the velocity builtins; gives the ledger back.
pub fn with_ledger<T>(ledger: Option<Ledger>, work: impl FnOnce() -> T) -> (T, Option<Ledger>) {
    CURRENT.with(|current| *current.borrow_mut() = ledger);
    let out = work();
    (out, CURRENT.with(|current| current.borrow_mut().take()))
}

pub fn register(engine: &mut Engine) -> anyhow::Result<()> {
    engine.add_extension("velocity.sum".into(), 2, Box::new(|args: Vec<Value>| read("sum", &args)))?;
    engine.add_extension("velocity.count".into(), 2, Box::new(|args: Vec<Value>| read("count", &args)))?;
    Ok(())
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
        let total = ledger.total(key, duration).map_err(|e| anyhow::anyhow!("velocity.{function}: {e}"))?;
        let (value, logged) = match function {
            "sum" => (Value::from(total.sum.to_string()), serde_json::Value::from(total.sum.to_string())),
            _ => (Value::from(total.count), serde_json::Value::from(total.count)),
        };
        let read = VelocityRead { function, key: key.to_string(), window: window.to_string(), value: logged };
        if !ledger.reads.contains(&read) {
            ledger.reads.push(read);
        }
        Ok(value)
    })
}
