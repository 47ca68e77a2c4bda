//! A policy set loaded from a directory: compiled once, never changed, shared by every evaluation.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use std::sync::Mutex;

use regorus::coverage::{File, Report};

use super::branches::{Branches, countable_lines};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};

use super::analysis::{self, RuleInfo};
use super::source::{FileRole, PolicySource, parse_data, role};
use crate::request::RequestKind;
use crate::transfer::Assets;

/// The rule each request kind is decided by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entrypoints {
    pub transaction: String,
    pub config_change: String,
}

impl Default for Entrypoints {
    fn default() -> Self {
        Self {
            transaction: "data.cosigner.transaction.decision".into(),
            config_change: "data.cosigner.config_change.decision".into(),
        }
    }
}

impl Entrypoints {
    pub fn for_kind(&self, kind: RequestKind) -> &str {
        match kind {
            RequestKind::Transaction => &self.transaction,
            RequestKind::ConfigChange => &self.config_change,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{path}: {message}")]
    Policy { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Data { path: PathBuf, message: String },
    #[error("no .rego files under {0}")]
    Empty(PathBuf),
    #[error("entrypoint {0} is not defined by any policy")]
    MissingEntrypoint(String),
    #[error("policies do not compile: {0}")]
    Compile(String),
    #[error("loading took longer than {0:?}")]
    TimedOut(Duration),
    #[error("{0}")]
    Recursion(String),
    #[error("activation check failed: {0}")]
    Gate(String),
}

/// With `coverage`: what evaluations covered, and every policy file's path and text.
struct Coverage {
    gathered: Mutex<Report>,
    files: Vec<(String, String)>,
    branches: Branches,
}

/// One loaded, compiled policy set. Cloning its engine is cheap; the snapshot itself never changes
/// (but for the coverage it gathers when compiled for the test runner).
pub struct PolicySnapshot {
    /// The set without its test modules: what `eval`, `check` and the tools see.
    engine: Engine,
    /// What decides requests: the modules the entrypoints can reach (see
    /// [`analysis::reachable_modules`]), which is all of `engine` unless some cannot be reached.
    deciding: Engine,
    /// The whole set, test modules included, when compiled `with_tests` and it has any.
    with_tests: Option<Engine>,
    entrypoints: Entrypoints,
    rules: Vec<RuleInfo>,
    coverage: Option<Coverage>,
    /// The set's `data.rawtx.assets`, for [`crate::transfer::Transfer::derive`].
    pub assets: Assets,
    pub revision: String,
    pub file_count: usize,
    /// Modules no entrypoint can reach, left out of decisions (relative paths).
    pub unreached: Vec<String>,
    pub loaded_at: SystemTime,
}

impl std::fmt::Debug for PolicySnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySnapshot")
            .field("revision", &self.revision)
            .field("file_count", &self.file_count)
            .finish_non_exhaustive()
    }
}

/// How a policy set is compiled.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    pub entrypoints: Entrypoints,
    /// Budget of each evaluation, set as regorus's execution timer.
    pub eval_timeout: Duration,
    /// Budget of reading plus compiling the whole set (regorus parsing of deeply nested literals is
    /// exponential; a pathological file must not stall start-up or reloads).
    pub load_timeout: Duration,
    /// Gather line coverage over every evaluation (the test runner's `--coverage`).
    pub coverage: bool,
    /// Also compile the test modules (`*_test.rego`), for running tests. Requests are always
    /// decided without them: each loaded module costs every evaluation time.
    pub with_tests: bool,
}

/// Each evaluation's budget (`policy.eval_timeout_ms`).
pub const DEFAULT_EVAL_TIMEOUT_MS: u64 = 5_000;
/// Reading and compiling a whole set (`reload.timeout_ms`).
pub const DEFAULT_RELOAD_TIMEOUT_MS: u64 = 10_000;

impl Default for CompileOptions {
    /// The server's defaults: the default entrypoints and time budgets, no coverage, no tests.
    fn default() -> Self {
        Self {
            entrypoints: Entrypoints::default(),
            eval_timeout: Duration::from_millis(DEFAULT_EVAL_TIMEOUT_MS),
            load_timeout: Duration::from_millis(DEFAULT_RELOAD_TIMEOUT_MS),
            coverage: false,
            with_tests: false,
        }
    }
}

impl PolicySnapshot {
    /// Reads, compiles and checks the set under `dir`, within `options.load_timeout`.
    pub fn load(dir: &Path, options: &CompileOptions) -> Result<Self, LoadError> {
        let dir = dir.to_path_buf();
        let options_here = options.clone();
        bounded(options.load_timeout, move || {
            let source = PolicySource::read(&dir)?;
            Self::compile_here(source, &options_here)
        })
    }

    /// Compiles an already read set, within `options.load_timeout`.
    pub fn compile(source: PolicySource, options: &CompileOptions) -> Result<Self, LoadError> {
        let options_here = options.clone();
        bounded(options.load_timeout, move || Self::compile_here(source, &options_here))
    }

    fn compile_here(source: PolicySource, options: &CompileOptions) -> Result<Self, LoadError> {
        let file_count = source.files.len();
        let texts: Vec<(String, String)> = if options.coverage {
            source.policies().map(|(path, text)| (path.display().to_string(), text.to_string())).collect()
        } else {
            Vec::new()
        };
        let mut modules = Vec::new();
        let mut data = Vec::new();
        for (rel, text) in source.files {
            let path = source.dir.join(&rel);
            match role(&rel) {
                Some(FileRole::Policy) => modules.push((path, text)),
                Some(FileRole::Data) => {
                    let value =
                        parse_data(&rel, &text).map_err(|message| LoadError::Data { path: path.clone(), message })?;
                    data.push((path, value));
                }
                None => {}
            }
        }
        let branches = options.coverage.then(|| {
            let mut branches = Branches::default();
            for (path, text) in &mut modules {
                *text = branches.instrument(&path.display().to_string(), text);
            }
            branches
        });
        let has_tests = modules.iter().any(|(path, _)| is_test_module(path));
        let serving = modules.iter().filter(|(path, _)| !is_test_module(path));
        let mut engine = build_engine(serving, &data, options, branches.as_ref())?;
        let mut with_tests = if options.with_tests && has_tests {
            Some(build_engine(modules.iter(), &data, options, branches.as_ref())?)
        } else {
            None
        };
        let rules = analysis::rules(with_tests.as_mut().unwrap_or(&mut engine));
        let recursive = analysis::recursive_functions(&rules);
        if !recursive.is_empty() {
            let found: Vec<String> = recursive
                .iter()
                .map(|(rule, cycle)| format!("{}: function {} calls itself ({cycle})", rule.location(), rule.name))
                .collect();
            return Err(LoadError::Recursion(format!(
                "recursive functions would overflow the evaluator's stack: {}",
                found.join("; ")
            )));
        }
        // Coverage reports on every module, so it keeps them all.
        let roots = [options.entrypoints.transaction.as_str(), options.entrypoints.config_change.as_str()];
        let kept = analysis::reachable_modules(&mut engine, &roots).filter(|_| !options.coverage);
        let (reached, unreached): (Vec<_>, Vec<_>) = modules
            .iter()
            .filter(|(path, _)| !is_test_module(path))
            .partition(|(path, _)| kept.as_ref().is_none_or(|kept| kept.contains(&path.display().to_string())));
        let mut deciding =
            if unreached.is_empty() { None } else { Some(build_engine(reached.into_iter(), &data, options, None)?) };
        let unreached = unreached
            .iter()
            .map(|(path, _)| path.strip_prefix(&source.dir).unwrap_or(path).display().to_string())
            .collect();
        for engine in std::iter::once(&mut engine).chain(with_tests.as_mut()).chain(deciding.as_mut()) {
            prepare(engine, options)?;
        }
        let deciding = deciding.unwrap_or_else(|| engine.clone());
        branches.iter().for_each(Branches::reset);
        // How the canonical transfer view reads raw transactions: `data.rawtx.assets`, once.
        let assets = data
            .iter()
            .filter_map(|(_, value)| serde_json::to_value(value).ok())
            .find_map(|value| value.pointer("/rawtx/assets").map(Assets::from_data))
            .unwrap_or_default();
        Ok(Self {
            engine,
            deciding,
            assets,
            with_tests,
            entrypoints: options.entrypoints.clone(),
            rules,
            coverage: branches.map(|branches| Coverage {
                gathered: Mutex::new(Report::default()),
                files: texts,
                branches,
            }),
            revision: source.revision,
            file_count,
            unreached,
            loaded_at: SystemTime::now(),
        })
    }

    /// Evaluates the entrypoint for `kind` on `input`. Returns the raw value and the policy's prints.
    /// Runs on an evaluation thread; see [`crate::policy::Evaluator`].
    pub fn evaluate(&self, kind: RequestKind, input: Value) -> (anyhow::Result<Value>, Vec<String>) {
        self.eval_in(&self.deciding, self.entrypoints.for_kind(kind), Some(input))
    }

    /// Evaluates any rule (a unit test, a rule shown by `eval --explain`), with or without input,
    /// test modules included if compiled `with_tests`. Must run on a large-stack thread, as
    /// [`PolicySnapshot::evaluate`].
    pub fn eval_rule(&self, path: &str, input: Option<Value>) -> (anyhow::Result<Value>, Vec<String>) {
        self.eval_in(self.with_tests.as_ref().unwrap_or(&self.engine), path, input)
    }

    fn eval_in(&self, engine: &Engine, path: &str, input: Option<Value>) -> (anyhow::Result<Value>, Vec<String>) {
        let mut engine = engine.clone();
        engine.set_input(input.unwrap_or(Value::Undefined));
        let result = engine.eval_rule(path.to_string());
        let prints = engine.take_prints().unwrap_or_default();
        if let Some(coverage) = &self.coverage
            && let Ok(report) = engine.get_coverage_report()
        {
            merge_coverage(&mut coverage.gathered.lock().unwrap_or_else(|p| p.into_inner()), report);
        }
        (result, prints)
    }

    /// What OPA would decide differently (see [`super::portable`]): warnings of `check`.
    pub fn portability_warnings(&self) -> Vec<super::lint::Finding> {
        let mut engine = self.engine.clone();
        super::portable::warnings(&mut engine)
    }

    /// What `check` finds beyond compiling (see [`super::lint`]), test modules included.
    pub fn lint(&self) -> Vec<super::lint::Finding> {
        let mut engine = self.with_tests.as_ref().unwrap_or(&self.engine).clone();
        super::lint::lint(&mut engine, &self.entrypoints)
    }

    pub fn entrypoints(&self) -> &Entrypoints {
        &self.entrypoints
    }

    /// Every rule definition of the set.
    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    /// Line coverage gathered so far (when compiled with `coverage`). A file no evaluation
    /// reached counts every line of code (not blank, comment, package or import) as not covered.
    pub fn coverage(&self) -> Option<Report> {
        let coverage = self.coverage.as_ref()?;
        let gathered = coverage.gathered.lock().unwrap_or_else(|p| p.into_inner());
        let files = coverage
            .files
            .iter()
            .map(|(path, code)| {
                let mut file = match gathered.files.iter().find(|f| &f.path == path) {
                    Some(f) => File {
                        path: path.clone(),
                        code: code.clone(),
                        covered: f.covered.clone(),
                        not_covered: f.not_covered.clone(),
                    },
                    // Counted as regorus counts a file it reached, so the total does not depend
                    // on which files the tests reached.
                    None => File {
                        path: path.clone(),
                        code: code.clone(),
                        covered: Default::default(),
                        not_covered: countable_lines(path, code),
                    },
                };
                coverage.branches.apply(&mut file);
                file
            })
            .collect();
        Some(Report { files })
    }
}

/// Runs `work` on a large-stack thread (as evaluation does) and gives up waiting after `limit`.
/// A thread stuck past the limit is left to finish on its own; its result is dropped.
pub(super) fn bounded<T: Send + 'static>(
    limit: Duration,
    work: impl FnOnce() -> Result<T, LoadError> + Send + 'static,
) -> Result<T, LoadError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("policy-load".into())
        .stack_size(super::EVAL_STACK_BYTES)
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .unwrap_or_else(|_| Err(LoadError::Compile("the policy loader panicked".into())));
            let _ = tx.send(result);
        })
        .map_err(|e| LoadError::Compile(format!("cannot start the loader thread: {e}")))?;
    rx.recv_timeout(limit).unwrap_or(Err(LoadError::TimedOut(limit)))
}

/// `*_test.rego`: OPA's convention for a module of unit tests.
fn is_test_module(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("_test.rego"))
}

/// An engine with our builtins, the given modules and the set's data.
fn build_engine<'a>(
    modules: impl Iterator<Item = &'a (PathBuf, String)>,
    data: &[(PathBuf, Value)],
    options: &CompileOptions,
    branches: Option<&Branches>,
) -> Result<Engine, LoadError> {
    let mut engine = Engine::new();
    super::builtins::register(&mut engine).map_err(|e| LoadError::Compile(e.to_string()))?;
    if let Some(branches) = branches {
        branches.register(&mut engine).map_err(|e| LoadError::Compile(e.to_string()))?;
    }
    for (path, text) in modules {
        engine
            .add_policy(path.display().to_string(), text.clone())
            .map_err(|e| LoadError::Policy { path: path.clone(), message: e.to_string() })?;
    }
    for (path, value) in data {
        engine.add_data(value.clone()).map_err(|e| LoadError::Data { path: path.clone(), message: e.to_string() })?;
    }
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: options.eval_timeout,
        check_interval: std::num::NonZeroU32::MIN.saturating_add(15),
    });
    engine.set_gather_prints(true);
    Ok(engine)
}

/// Compiles the set once (the first evaluation runs regorus's analysis), then checks that each
/// entrypoint names a rule. Only a missing rule counts against the entrypoints: a policy may
/// legitimately fail on the empty input used here.
fn prepare(engine: &mut Engine, options: &CompileOptions) -> Result<(), LoadError> {
    engine.set_input(Value::new_object());
    engine.eval_query("true".into(), false).map_err(|e| LoadError::Compile(e.to_string()))?;
    let entrypoints = &options.entrypoints;
    for entrypoint in [&entrypoints.transaction, &entrypoints.config_change] {
        if let Err(e) = engine.eval_rule(entrypoint.clone()) {
            if e.to_string().contains("not a valid rule path") {
                return Err(LoadError::MissingEntrypoint(entrypoint.clone()));
            }
            tracing::debug!(entrypoint, error = %e, "entrypoint fails on an empty input");
        }
    }
    let _ = engine.take_prints();
    if options.coverage {
        engine.set_enable_coverage(true);
    }
    Ok(())
}

/// Adds one evaluation's coverage: a line is covered if any evaluation covered it.
fn merge_coverage(total: &mut Report, report: Report) {
    for file in report.files {
        match total.files.iter_mut().find(|f| f.path == file.path) {
            Some(known) => {
                known.covered.extend(file.covered);
                known.not_covered.extend(file.not_covered);
                let covered = known.covered.clone();
                known.not_covered.retain(|line| !covered.contains(line));
            }
            None => total.files.push(file),
        }
    }
}

pub(crate) fn is_time_limit(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.to_string().contains("exceeded time limit"))
}
