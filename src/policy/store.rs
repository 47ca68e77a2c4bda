//! The active policy snapshot and its reloads: each reload builds a whole new set aside, checks it,
//! and swaps it in atomically; any failure keeps the last good set.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::snapshot::bounded;
use super::{CompileOptions, LoadError, PolicySnapshot, PolicySource};

/// A check a candidate snapshot must pass before it goes live (e.g. the policy set's own tests).
pub type ActivationGate = Box<dyn Fn(&Path, &Arc<PolicySnapshot>) -> Result<(), String> + Send + Sync>;
/// Told of every reload attempt's outcome and the revision active after it (metrics).
pub type ReloadObserver = Box<dyn Fn(&ReloadOutcome, &str) + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new snapshot is live.
    Activated { revision: String },
    /// The files on disk are the active set already.
    Unchanged,
    /// The candidate was refused; the previous snapshot stays live.
    Failed { error: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadAttempt {
    pub at: String,
    pub trigger: String,
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadCounts {
    pub activated: u64,
    pub unchanged: u64,
    pub failed: u64,
}

/// What `/status` shows of the policy set.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    pub dir: String,
    pub revision: String,
    pub loaded_at: String,
    pub file_count: usize,
    /// Modules no entrypoint can reach: left out of decisions, still checked and tested.
    pub unreached_modules: Vec<String>,
    pub last_reload: Option<ReloadAttempt>,
    pub reloads: ReloadCounts,
}

#[derive(Default)]
struct History {
    last: Option<ReloadAttempt>,
    counts: ReloadCounts,
}

pub struct PolicyStore {
    dir: PathBuf,
    options: CompileOptions,
    active: ArcSwap<PolicySnapshot>,
    history: Mutex<History>,
    /// One reload at a time; requests never wait on it.
    reloading: Mutex<()>,
    gate: Option<ActivationGate>,
    observer: Option<ReloadObserver>,
}

impl ReloadOutcome {
    pub fn result(&self) -> &'static str {
        match self {
            ReloadOutcome::Activated { .. } => "activated",
            ReloadOutcome::Unchanged => "unchanged",
            ReloadOutcome::Failed { .. } => "failed",
        }
    }
}

impl PolicyStore {
    /// Loads the initial snapshot; start-up fails if it does not load.
    pub fn open(dir: &Path, options: CompileOptions) -> Result<Self, LoadError> {
        let snapshot = PolicySnapshot::load(dir, &options)?;
        tracing::info!(
            revision = %snapshot.revision,
            files = snapshot.file_count,
            unreached = ?snapshot.unreached,
            dir = %dir.display(),
            "policies loaded"
        );
        Ok(Self {
            dir: dir.to_path_buf(),
            options,
            active: ArcSwap::from_pointee(snapshot),
            history: Mutex::default(),
            reloading: Mutex::new(()),
            gate: None,
            observer: None,
        })
    }

    /// A store that serves `snapshot` and nothing else (the fixtures of a candidate not yet active).
    pub fn fixed(dir: &Path, options: CompileOptions, snapshot: Arc<PolicySnapshot>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            options,
            active: ArcSwap::new(snapshot),
            history: Mutex::default(),
            reloading: Mutex::new(()),
            gate: None,
            observer: None,
        }
    }

    /// Adds a check every candidate must pass before activation; the loaded set must pass it now.
    pub fn with_gate(mut self, gate: ActivationGate) -> Result<Self, LoadError> {
        gate(&self.dir, &self.active.load_full()).map_err(LoadError::Gate)?;
        self.gate = Some(gate);
        Ok(self)
    }

    pub fn with_observer(mut self, observer: ReloadObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &CompileOptions {
        &self.options
    }

    /// The snapshot a request must use from start to end.
    pub fn active(&self) -> Arc<PolicySnapshot> {
        self.active.load_full()
    }

    /// Rebuilds the set from disk and activates it if it differs and passes every check. Blocking:
    /// call it off the async workers.
    pub fn reload(&self, trigger: &str) -> ReloadOutcome {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let outcome = match self.build_candidate() {
            Ok(None) => ReloadOutcome::Unchanged,
            Ok(Some(snapshot)) => {
                let revision = snapshot.revision.clone();
                self.active.store(snapshot);
                ReloadOutcome::Activated { revision }
            }
            Err(error) => ReloadOutcome::Failed { error },
        };
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        self.record(trigger, &outcome, duration_ms);
        if let Some(observer) = &self.observer {
            observer(&outcome, &self.active.load().revision);
        }
        outcome
    }

    fn build_candidate(&self) -> Result<Option<Arc<PolicySnapshot>>, String> {
        let dir = self.dir.clone();
        let source = bounded(self.options.load_timeout, move || PolicySource::read(&dir)).map_err(|e| e.to_string())?;
        if source.revision == self.active.load().revision {
            return Ok(None);
        }
        let snapshot = Arc::new(PolicySnapshot::compile(source, &self.options).map_err(|e| e.to_string())?);
        if let Some(gate) = &self.gate {
            gate(&self.dir, &snapshot).map_err(|e| format!("activation check failed: {e}"))?;
        }
        Ok(Some(snapshot))
    }

    fn record(&self, trigger: &str, outcome: &ReloadOutcome, duration_ms: f64) {
        let (result, revision, error) = match outcome {
            ReloadOutcome::Activated { revision } => {
                tracing::info!(%revision, trigger, duration_ms, "policies reloaded");
                ("activated", Some(revision.clone()), None)
            }
            // Asked for (SIGHUP, the admin API), "unchanged" is an answer; after a file event, noise.
            ReloadOutcome::Unchanged if trigger != "change" => {
                tracing::info!(trigger, duration_ms, "policies unchanged");
                ("unchanged", None, None)
            }
            ReloadOutcome::Unchanged => {
                tracing::debug!(trigger, duration_ms, "policies unchanged");
                ("unchanged", None, None)
            }
            ReloadOutcome::Failed { error } => {
                tracing::error!(%error, trigger, active_revision = %self.active.load().revision, "policy reload failed; keeping the active set");
                ("failed", None, Some(error.clone()))
            }
        };
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            ReloadOutcome::Activated { .. } => history.counts.activated += 1,
            ReloadOutcome::Unchanged => history.counts.unchanged += 1,
            ReloadOutcome::Failed { .. } => history.counts.failed += 1,
        }
        history.last = Some(ReloadAttempt {
            at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            trigger: trigger.to_string(),
            result,
            revision,
            error,
            duration_ms,
        });
    }

    pub fn status(&self) -> PolicyStatus {
        let active = self.active.load();
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        PolicyStatus {
            dir: self.dir.display().to_string(),
            revision: active.revision.clone(),
            loaded_at: DateTime::<Utc>::from(active.loaded_at).to_rfc3339_opts(SecondsFormat::Millis, true),
            file_count: active.file_count,
            unreached_modules: active.unreached.clone(),
            last_reload: history.last.clone(),
            reloads: history.counts.clone(),
        }
    }
}
