//! The policy author's commands: `test`, `check` and `eval`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::config::Settings;
use crate::envelope::Mode;
use crate::holds::HoldSettings;
use crate::keys::{CosignerKey, CosignerKeyring};
use crate::pipeline::{self, Pipeline};
use crate::policy::analysis::RuleKind;
use crate::policy::{CompileOptions, Evaluator, Fallbacks, PolicySnapshot, PolicySource, PolicyStore, on_eval_stack};
use crate::request::RequestKind;
use crate::state::StateStore;
use crate::testing::report::{self, Counts, CoverageSummary, Format};
use crate::testing::{self, RunOptions};

/// Which policy sets a command works on.
#[derive(Debug, Args)]
pub struct PolicySets {
    /// Policy directories [default: policy.dir of --config, else ./policies].
    pub paths: Vec<PathBuf>,
    /// Take the policy directory and entrypoints from this configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl PolicySets {
    fn resolve(&self) -> anyhow::Result<(Vec<PathBuf>, CompileOptions)> {
        let mut options = CompileOptions { with_tests: true, ..CompileOptions::default() };
        let mut dirs = self.paths.clone();
        if let Some(config) = &self.config {
            let policy = Settings::load_policy(config)?;
            options = CompileOptions { with_tests: true, ..policy.compile };
            if dirs.is_empty() {
                dirs.push(policy.dir);
            }
        }
        if dirs.is_empty() {
            dirs.push(PathBuf::from("policies"));
        }
        Ok((dirs, options))
    }
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub sets: PolicySets,
    #[arg(long, value_enum, default_value = "pretty")]
    pub format: Format,
    /// Run only the tests whose name matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub run: Option<String>,
    /// Fail when no test ran.
    #[arg(long)]
    pub fail_on_empty: bool,
    /// Report per-file line coverage, with the lines not covered.
    #[arg(long)]
    pub coverage: bool,
    /// Fail below this coverage percentage (implies --coverage).
    #[arg(long, value_name = "PCT")]
    pub threshold: Option<f64>,
    /// Also decide every case expecting no APPROVE with each field of its request removed and
    /// retyped; fail if any such mutant is approved (a rule that a missing field silences).
    #[arg(long)]
    pub mutate: bool,
    /// Write every decision the fixture cases (and mutants) make — input, our builtins' calls,
    /// answer — as JSON lines, for the OPA portability check (`.ci/opa_portability.py`).
    #[arg(long, value_name = "FILE")]
    pub export_decisions: Option<PathBuf>,
}

/// Exit codes: 0 all passed, 2 a test failed (or coverage/emptiness checks), 1 could not load.
pub fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let (dirs, options) = args.sets.resolve()?;
    let filter = args.run.as_deref().map(regex::Regex::new).transpose().context("--run")?;
    let export = match (&args.export_decisions, dirs.as_slice()) {
        (Some(path), [dir]) => {
            let data =
                PolicySource::read(dir).map_err(|e| anyhow::anyhow!("{e}"))?.data().map_err(anyhow::Error::msg)?;
            let exporter = testing::export::Exporter::create(path, &data);
            Some(std::sync::Arc::new(exporter.with_context(|| format!("--export-decisions {}", path.display()))?))
        }
        (Some(_), _) => anyhow::bail!("--export-decisions: one policy set at a time"),
        (None, _) => None,
    };
    let run = RunOptions { filter, coverage: args.coverage || args.threshold.is_some(), export };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut results = Vec::new();
    let mut coverage: Option<regorus::coverage::Report> = None;
    for dir in &dirs {
        match runtime.block_on(testing::run(dir, &options, &run)) {
            Ok(report) => {
                results.extend(report.results);
                if let Some(more) = report.coverage {
                    coverage.get_or_insert_with(Default::default).files.extend(more.files);
                }
            }
            Err(e) => {
                eprintln!("error: cannot load the tests: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    // Mutation results are test results too, so every format reports them (and counts them).
    let mut mutation = None;
    if args.mutate {
        let started = Instant::now();
        let mut reports = Vec::new();
        for dir in &dirs {
            match runtime.block_on(testing::mutate(dir, &options, &run)) {
                Ok(report) => reports.push(report),
                Err(e) => {
                    eprintln!("error: cannot mutate the fixtures: {e}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
        results.extend(mutation_results(&reports, started.elapsed()));
        mutation = Some(mutation_summary(&reports, started.elapsed()));
    }
    let report = testing::RunReport { results, coverage };
    let summary = report.coverage.as_ref().map(CoverageSummary::of);
    print!("{}", report::render(args.format, &report, summary.as_ref()));
    let counts = Counts::of(&report.results);
    let mut failed = counts.failed + counts.errors > 0;
    if args.fail_on_empty && counts.passed + counts.failed + counts.errors == 0 {
        eprintln!("error: no test ran (--fail-on-empty)");
        failed = true;
    }
    if let (Some(threshold), Some(summary)) = (args.threshold, &summary)
        && summary.percent < threshold
    {
        eprintln!("error: coverage {:.1}% is below the threshold of {threshold}%", summary.percent);
        failed = true;
    }
    if let Some(shown) = mutation {
        // Machine-readable formats keep stdout to themselves.
        if args.format == Format::Pretty { print!("{shown}") } else { eprint!("{shown}") }
    }
    Ok(if failed { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

/// One failed result per approved mutant, or one passed result saying how many were tried.
fn mutation_results(reports: &[testing::MutationReport], took: Duration) -> Vec<testing::TestResult> {
    let mutants: usize = reports.iter().map(|r| r.mutants).sum();
    let survivors: Vec<testing::TestResult> = reports
        .iter()
        .flat_map(|r| &r.survivors)
        .map(|survivor| testing::TestResult {
            name: format!("{} with {}", survivor.case, survivor.mutation),
            suite: "mutation",
            location: survivor.location.clone(),
            outcome: testing::Outcome::Fail(format!(
                "approved{}",
                survivor.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
            )),
            duration: Duration::ZERO,
            prints: Vec::new(),
        })
        .collect();
    if !survivors.is_empty() {
        return survivors;
    }
    vec![testing::TestResult {
        name: format!("{mutants} mutants of the cases expecting no APPROVE: none approved"),
        suite: "mutation",
        location: String::new(),
        outcome: testing::Outcome::Pass,
        duration: took,
        prints: Vec::new(),
    }]
}

fn mutation_summary(reports: &[testing::MutationReport], took: Duration) -> String {
    let mut out = String::new();
    let (mut cases, mut mutants, mut survivors) = (0, 0, 0);
    for report in reports {
        cases += report.cases;
        mutants += report.mutants;
        survivors += report.survivors.len();
        for survivor in &report.survivors {
            out += &format!(
                "MUTANT APPROVED  {:?} ({}): {} — approved{}\n",
                survivor.case,
                survivor.location,
                survivor.mutation,
                survivor.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
            );
        }
        for case in &report.not_mutated {
            out += &format!("not mutated      {case}\n");
        }
    }
    out += &format!(
        "\nmutation: {cases} cases expecting no APPROVE, {mutants} mutants, {survivors} approved ({:.1} s)\n",
        took.as_secs_f64()
    );
    out
}

/// Parses every file (reporting every parse error), then compiles the set exactly as `serve` does.
/// Exit codes: 0 all is well, 1 an error (each printed). With `--config`, everything `serve` does
/// before it binds: the configuration with its keys and certificates, the decision log's file, the
/// state store's directory, the policy set and — under `reload.require_tests` — its tests.
pub fn check(sets: PolicySets) -> anyhow::Result<ExitCode> {
    let (dirs, options) = sets.resolve()?;
    let (mut ok, mut require_tests) = (true, false);
    if let Some(config) = &sets.config {
        match Settings::load(config) {
            Ok(settings) => {
                require_tests = settings.reload.require_tests;
                ok &= check_start_up(config, &settings);
            }
            Err(e) => {
                eprintln!("error: {}: {e}", config.display());
                ok = false;
            }
        }
    }
    for dir in dirs {
        let source = match PolicySource::read(&dir) {
            Ok(source) => source,
            Err(e) => {
                eprintln!("error: {e}");
                ok = false;
                continue;
            }
        };
        let mut parse_errors = 0;
        for (path, text) in source.policies() {
            if let Err(e) = regorus::Engine::new().add_policy(path.display().to_string(), text.to_string()) {
                eprintln!("error: {e}");
                parse_errors += 1;
            }
        }
        if parse_errors > 0 {
            ok = false;
            continue;
        }
        let loaded = PolicySnapshot::load(&dir, &options).map_err(|e| e.to_string()).and_then(|snapshot| {
            let snapshot = Arc::new(snapshot);
            if require_tests {
                crate::testing::require_passing_tests(&dir, &snapshot).map(|()| snapshot)
            } else {
                Ok(snapshot)
            }
        });
        let loaded = loaded.and_then(|snapshot| {
            for warning in snapshot.portability_warnings() {
                println!("warning: {warning}");
            }
            let findings = snapshot.lint();
            for finding in &findings {
                eprintln!("error: {finding}");
            }
            if findings.is_empty() { Ok(snapshot) } else { Err(format!("{} problem(s) above", findings.len())) }
        });
        match loaded {
            Ok(snapshot) => println!(
                "ok: {} ({} files, revision {}; {} and {} defined)",
                dir.display(),
                snapshot.file_count,
                snapshot.revision,
                options.entrypoints.transaction,
                options.entrypoints.config_change
            ),
            Err(e) => {
                eprintln!("error: {}: {e}", dir.display());
                ok = false;
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// What start-up opens besides the policies: the files behind the settings `Settings::load` has
/// already read (keys, certificates) are fine by now; the decision log and the state directory
/// must be writable.
fn check_start_up(config: &Path, settings: &Settings) -> bool {
    let mut ok = true;
    for warning in &settings.warnings {
        println!("warning: {warning}");
    }
    // As `serve` does: a candidate that does not load is served without, never a refusal.
    if let Some(candidate) = &settings.policy.candidate_dir
        && let Err(e) = PolicySnapshot::load(candidate, &settings.policy.compile)
    {
        println!(
            "warning: policy.candidate_dir {}: does not load, so serve runs WITHOUT the shadow (until a restart): {e}",
            candidate.display()
        );
    }
    // Probed the way start-up uses them, and left as found: what a check created, it removes.
    if let crate::audit::Sink::File { path, .. } = &settings.decision_log.sink {
        let existed = path.exists();
        // The outermost directory the probe will create, if any: removed again afterwards.
        let parent = path.ancestors().skip(1).take_while(|p| !p.as_os_str().is_empty() && !p.exists()).last();
        let parent = parent.map(Path::to_path_buf);
        let opened = crate::audit::open_file(path);
        if let Some(parent) = parent {
            if opened.is_ok() && !existed {
                drop(std::fs::remove_file(path));
            }
            drop(std::fs::remove_dir_all(parent));
        }
        match opened {
            Ok(_) if !existed => drop(std::fs::remove_file(path)),
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: decision_log.path {}: {e}", path.display());
                ok = false;
            }
        }
    }
    if let crate::state::Backend::Embedded { dir } = &settings.state.backend {
        let existed = dir.exists();
        let probed = std::fs::create_dir_all(dir).and_then(|()| {
            let probe = dir.join(format!(".check-{}", std::process::id()));
            std::fs::write(&probe, b"").and_then(|()| std::fs::remove_file(&probe))
        });
        if !existed {
            drop(std::fs::remove_dir(dir));
        }
        if let Err(e) = probed {
            eprintln!("error: state.path {}: {e}", dir.display());
            ok = false;
        }
    }
    if ok {
        println!("ok: {} (keys, certificates, decision log, state store)", config.display());
    }
    ok
}

/// Spelled as in the input document and the fixtures (`config_change`); `config-change` still works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Transaction,
    #[value(name = "config_change", alias = "config-change")]
    ConfigChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Jwt,
    Json,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// The request: a payload (JSON), or a signed JWT with --cosigner-key.
    #[arg(long, value_name = "FILE")]
    pub request: PathBuf,
    /// The request's received_at (RFC 3339) [default: now].
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// Also show what the policy printed and the value of every rule of the entrypoint's package.
    #[arg(long)]
    pub explain: bool,
    /// The request file is a JWT: verify it with this Co-signer public key (PEM).
    #[arg(long, value_name = "PEM")]
    pub cosigner_key: Option<PathBuf>,
    /// `input.context.mode` for a payload file [default: jwt, as in fixtures]; a JWT is jwt.
    #[arg(long, value_enum, conflicts_with = "cosigner_key")]
    pub mode: Option<ModeArg>,
    /// `input.context.cosigner_key` in jwt mode: the name of the key that verified the request
    /// [default: fixture, as in fixtures].
    #[arg(long, value_name = "NAME", default_value = "fixture")]
    pub key_name: String,
    #[command(flatten)]
    pub sets: PolicySets,
}

/// Decides one request exactly as the server would and shows why.
pub fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let (dirs, options) = args.sets.resolve()?;
    let dir = dirs.first().context("no policy directory")?.clone();
    let kind = match args.kind {
        KindArg::Transaction => RequestKind::Transaction,
        KindArg::ConfigChange => RequestKind::ConfigChange,
    };
    let received_at = match &args.now {
        Some(now) => chrono::DateTime::parse_from_rfc3339(now).context("--now")?.with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let body = std::fs::read(&args.request).with_context(|| format!("reading {}", args.request.display()))?;
    let (mode, keyring) = match &args.cosigner_key {
        Some(path) => (Mode::Jwt, CosignerKeyring::new(vec![CosignerKey::from_pem_file(&args.key_name, path)?])),
        None => (Mode::Json, CosignerKeyring::default()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let store = Arc::new(PolicyStore::open(&dir, options.clone()).with_context(|| dir.display().to_string())?);
        let evaluator = Arc::new(Evaluator::new(1, options.eval_timeout, Fallbacks::default())?);
        // An empty store: `velocity.*` reads see no history.
        let state = Arc::new(StateStore::in_memory()?);
        let pipeline =
            Pipeline::new(CosignerKeyring::default(), None, store.clone(), evaluator, state, HoldSettings::default());
        let (request, mut context) = pipeline::open(mode, kind, &body, received_at, &keyring)?;
        // A payload file gets the context a fixture case gets: jwt mode, the key named `--key-name`.
        if args.cosigner_key.is_none() && args.mode != Some(ModeArg::Json) {
            context.mode = Mode::Jwt;
            context.cosigner_key = Some(args.key_name.as_str().into());
        }
        let deadline = Instant::now() + options.eval_timeout + Duration::from_secs(1);
        let evaluated = pipeline.decide(request, &context, deadline).await;
        println!("input:\n{}", serde_json::to_string_pretty(&evaluated.input)?);
        let decision = &evaluated.decision;
        let shown = json!({"action": decision.action, "reason": decision.reason, "source": decision.source.to_string(),
            "record": decision.records});
        println!("decision:\n{}", serde_json::to_string_pretty(&shown)?);
        // Say what the limits over time saw: an empty store, not the server's.
        let reads: Vec<String> = evaluated
            .state
            .reads
            .iter()
            .map(|r| format!("velocity.{}({:?}, {:?}) = {}", r.function, r.key, r.window, r.value))
            .collect();
        if reads.is_empty() {
            println!("state: empty (eval does not read the server's store)");
        } else {
            println!("state: empty (eval does not read the server's store): {}", reads.join(", "));
        }
        if args.explain {
            println!("explain:");
            for line in &evaluated.prints {
                println!("  print: {line}");
            }
            for (path, value) in explain(&store.active(), kind, &evaluated.input)? {
                println!("  {path} = {value}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The value of every non-function rule in the entrypoint's package, for this input.
fn explain(
    snapshot: &Arc<PolicySnapshot>,
    kind: RequestKind,
    input: &serde_json::Value,
) -> anyhow::Result<Vec<(String, String)>> {
    let entrypoint = snapshot.entrypoints().for_kind(kind).to_string();
    let package = entrypoint.rsplit_once('.').map_or(entrypoint.clone(), |(p, _)| p.to_string());
    let mut paths: Vec<String> = snapshot
        .rules()
        .iter()
        .filter(|r| r.package == package && r.kind != RuleKind::Function && !r.name.starts_with("test_"))
        .map(|r| r.path())
        .collect();
    paths.sort();
    paths.dedup();
    let snapshot = Arc::clone(snapshot);
    let input = regorus::Value::from(input.clone());
    Ok(on_eval_stack(move || {
        paths
            .into_iter()
            .map(|path| {
                let (result, _) = snapshot.eval_rule(&path, Some(input.clone()));
                let shown = match result {
                    Ok(regorus::Value::Undefined) => "undefined".to_string(),
                    Ok(value) => serde_json::to_string(&value).unwrap_or_default(),
                    Err(e) => format!("error: {e}"),
                };
                (path, shown)
            })
            .collect()
    })?)
}
