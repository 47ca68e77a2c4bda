//! The decision log as evidence: `log verify` (the hash chain), `replay` (what a policy set would
//! change) and `fixture --from-log` (a record as a test case).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::audit::chain::CheckpointKey;
use crate::audit::records::Logged;
use crate::config::Settings;
use crate::policy::{CompileOptions, Fallbacks};
use crate::replay::{Replayer, Report};

/// Every passkey verdict (`hold_verdict` with `passkey`) checked again offline: the assertion
/// against its statement and public key, and that key against the approver's enrolment when the
/// files hold it (`approver_enrolled`). Prints how many; the first failure is the error.
fn reverify_passkey_verdicts(files: &[PathBuf]) -> anyhow::Result<Result<(), String>> {
    let mut enrolled: BTreeMap<String, Value> = BTreeMap::new();
    let (mut checked, mut matched) = (0, 0);
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
        for (index, line) in text.lines().enumerate() {
            let Ok(record) = serde_json::from_str::<Value>(line) else { continue };
            let key = |passkey: &Value| json!([passkey["cred"]["cred_id"], passkey["cred"]["cred"]]);
            match record["event"].as_str() {
                Some("approver_enrolled") => {
                    enrolled
                        .insert(record["credential"].as_str().unwrap_or_default().to_owned(), key(&record["passkey"]));
                }
                Some("hold_verdict") if !record["passkey"].is_null() => {
                    let at = format!("{}:{}", file.display(), index + 1);
                    if let Err(e) = crate::console::reverify(&record) {
                        return Ok(Err(format!("{at}: the passkey verdict does not verify: {e}")));
                    }
                    let proof = &record["passkey"];
                    if let Some(enrolment) = enrolled.get(proof["credential"].as_str().unwrap_or_default()) {
                        if *enrolment != key(&proof["passkey"]) {
                            return Ok(Err(format!("{at}: the verdict's public key is not the one enrolled")));
                        }
                        matched += 1;
                    }
                    checked += 1;
                }
                _ => {}
            }
        }
    }
    if checked > 0 {
        println!(
            "{checked} passkey verdicts verified again offline ({matched} against their enrolment in these files)"
        );
    }
    Ok(Ok(()))
}

/// `log verify [--key PEM [--checkpoint-every N]] FILE...`: exit 0 intact, 2 broken (with --key
/// also: no checkpoint, or more than N records after the last one), 1 unreadable.
pub fn verify(files: &[PathBuf], key: Option<&Path>, checkpoint_every: u64) -> anyhow::Result<ExitCode> {
    let key = match key {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("--key {}", path.display()))?;
            Some(CheckpointKey::from_pem(&pem).map_err(|e| anyhow::anyhow!("--key {}: {e}", path.display()))?)
        }
        None => None,
    };
    let verified = match crate::audit::chain::verify(files, key.as_ref())? {
        Ok(verified) => verified,
        Err(broken) => {
            eprintln!("broken: {broken}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Err(broken) = reverify_passkey_verdicts(files)? {
        eprintln!("broken: {broken}");
        return Ok(ExitCode::from(2));
    }
    let start = if verified.from_genesis { "from its first record" } else { "after rotated-away records" };
    let chains =
        if verified.segments > 1 { format!(" in {} chains (one per start)", verified.segments) } else { String::new() };
    println!("ok: {} records chained {start}{chains}; head {}", verified.records, verified.head);
    match (&verified.last_checkpoint, &key) {
        (None, Some(_)) => {
            eprintln!(
                "broken: no signed checkpoint: nothing proves who wrote the records (a rewritten log drops them)"
            );
            return Ok(ExitCode::from(2));
        }
        (None, None) => println!("no signed checkpoint: nothing proves who wrote the records"),
        (Some(_), Some(_)) if verified.segments > 1 && verified.longest_unsigned_tail as u64 > checkpoint_every => {
            eprintln!(
                "broken: a chain ends with {} records after its last checkpoint, more than checkpoint_every \
                 ({checkpoint_every}): records were added without the key",
                verified.longest_unsigned_tail
            );
            return Ok(ExitCode::from(2));
        }
        (Some(last), Some(_)) if last.records_after as u64 > checkpoint_every => {
            eprintln!(
                "broken: {} records after the last checkpoint ({}:{}), more than checkpoint_every ({checkpoint_every}): \
                 the writer signs at least that often, so records were added or rewritten without the key",
                last.records_after,
                last.file.display(),
                last.line
            );
            return Ok(ExitCode::from(2));
        }
        (Some(last), Some(_)) => println!(
            "{} checkpoints signed by --key; the last at {}:{}, with {} records after it not yet signed",
            verified.checkpoints,
            last.file.display(),
            last.line,
            last.records_after
        ),
        (Some(_), None) => {
            println!("{} checkpoints, signatures not verified: pass --key PUBLIC_PEM", verified.checkpoints)
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayFormat {
    Pretty,
    Json,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Decision log files, oldest first (e.g. `decisions.jsonl.1 decisions.jsonl`).
    #[arg(long = "log", required = true, num_args = 1.., value_name = "FILE")]
    pub logs: Vec<PathBuf>,
    /// The policy set to decide them with.
    #[arg(long, value_name = "DIR")]
    pub policies: PathBuf,
    #[arg(long, value_enum, default_value = "pretty")]
    pub format: ReplayFormat,
    /// Take the entrypoints and fallbacks (policy.on_error, policy.on_timeout) from this
    /// configuration, as the server that wrote the log had them [default: the defaults].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Examples shown per group of changes (pretty format).
    #[arg(long, default_value = "3", value_name = "N")]
    pub examples: usize,
}

/// Exit codes: 0 nothing changed, 2 something changed (or could not be replayed exactly), 1 the
/// replay could not run.
pub fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let (options, fallbacks) = match &args.config {
        Some(config) => {
            let policy = Settings::load_policy(config)?;
            (policy.compile, Fallbacks { error: policy.on_error, timeout: policy.on_timeout, ..Fallbacks::default() })
        }
        None => (CompileOptions::default(), Fallbacks::default()),
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let started = std::time::Instant::now();
    let report = runtime.block_on(async {
        let replayer = Replayer::open(&args.policies, options, fallbacks, threads)
            .with_context(|| format!("--policies {}", args.policies.display()))?;
        crate::replay::replay_files(Arc::new(replayer), &args.logs, threads * 2).await
    });
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: cannot replay: {e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    for line in &report.unreadable {
        eprintln!("warning: {line} (skipped)");
    }
    match args.format {
        ReplayFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ReplayFormat::Pretty => print!("{}", pretty(&report, &args.policies, args.examples, started.elapsed())),
    }
    Ok(if report.is_unchanged() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

fn pretty(report: &Report, dir: &Path, examples: usize, took: std::time::Duration) -> String {
    let mut out = format!(
        "replayed {} decisions against {} (revision {}) in {:.1} s: {} changed\n",
        report.total,
        dir.display(),
        report.policy_revision,
        took.as_secs_f64(),
        report.changed
    );
    let mut groups: BTreeMap<(&str, &str, &str), Vec<&crate::replay::Change>> = BTreeMap::new();
    for change in &report.changes {
        let key =
            (change.before.action.as_str(), change.after.action.as_str(), change.after.reason.as_deref().unwrap_or(""));
        groups.entry(key).or_default().push(change);
    }
    for ((before, after, reason), changes) in &groups {
        out += &format!("\n  {before} → {after} ×{}: {reason:?}\n", changes.len());
        for change in changes.iter().take(examples) {
            out += &format!(
                "    e.g. decision {} (requestId {}), was {:?}{}\n",
                change.decision_id,
                change.request_id,
                change.before.reason.as_deref().unwrap_or(""),
                if change.derived { " [derived]" } else { "" }
            );
        }
    }
    if report.skipped > 0 {
        out += &format!(
            "\n{} not replayed: answered by the state store, the decision log or overload, not the policy\n",
            report.skipped
        );
    }
    if !report.unreplayable.is_empty() {
        out += &format!("\n{} could not be replayed exactly:\n", report.unreplayable.len());
        for record in report.unreplayable.iter().take(examples.max(1) * 3) {
            out += &format!("  decision {} (requestId {}): {}\n", record.decision_id, record.request_id, record.why);
        }
    }
    if report.derived > 0 {
        out += &format!(
            "\n{} decided with state derived from this set's approvals earlier in the log (a limit the old set did \
             not keep; it may under-count what came before the log's first record){}\n",
            report.derived,
            if report.changes.iter().any(|c| c.derived) { ": the changes marked [derived] are among them" } else { "" }
        );
    }
    if !report.inconclusive.is_empty() {
        out += &format!("\n{} inconclusive: they depend on values the log redacted\n", report.inconclusive.len());
        for record in report.inconclusive.iter().take(examples.max(1) * 3) {
            out += &format!("  decision {} (requestId {}): {}\n", record.decision_id, record.request_id, record.why);
        }
    }
    if report.redacted > 0 {
        out += &format!(
            "\nnote: {} records were redacted in the log (decision_log.redact): the replay saw \"{}\" where the policy saw the value\n",
            report.redacted,
            crate::audit::REDACTED
        );
    }
    out
}

#[derive(Debug, Args)]
pub struct FixtureArgs {
    /// A decision log file.
    #[arg(long = "from-log", value_name = "FILE")]
    pub log: PathBuf,
    /// The decision to make a test case of (`decision_id` of the record).
    #[arg(long, value_name = "ID", required_unless_present = "tx_id", conflicts_with = "tx_id")]
    pub decision_id: Option<String>,
    /// Or the transaction's last decision in the log (its latest stage or retry).
    #[arg(long, value_name = "TXID")]
    pub tx_id: Option<String>,
}

/// Prints a fixture file (`*_test.yaml`) with one case: the recorded request as the policy saw it.
pub fn fixture(args: FixtureArgs) -> anyhow::Result<ExitCode> {
    let file = std::fs::File::open(&args.log).with_context(|| args.log.display().to_string())?;
    let (needle, what) = match (&args.decision_id, &args.tx_id) {
        (Some(id), _) => (id.as_str(), format!("decision {id}")),
        (None, Some(tx_id)) => (tx_id.as_str(), format!("decision of transaction {tx_id}")),
        (None, None) => anyhow::bail!("--decision-id or --tx-id is required"),
    };
    let mut found = None;
    for line in std::io::BufReader::new(file).lines() {
        let line = line.with_context(|| args.log.display().to_string())?;
        // Cheap filter first: a log holds many records and only a few are wanted.
        if !line.contains(needle) {
            continue;
        }
        let Ok(Some(logged)) = Logged::parse(&line) else { continue };
        let wanted = match &args.decision_id {
            Some(id) => &logged.decision_id == id,
            None => serde_json::from_str::<serde_json::Value>(&line).is_ok_and(|v| v["txId"] == needle),
        };
        if wanted {
            found = Some((logged, line));
            if args.decision_id.is_some() {
                break;
            }
        }
    }
    match found {
        Some((logged, line)) => {
            print!("{}", fixture_of(&logged, &line)?);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("error: no {what} in {}", args.log.display());
            Ok(ExitCode::from(1))
        }
    }
}

fn fixture_of(logged: &Logged, line: &str) -> anyhow::Result<String> {
    let (request, context) = logged.request().map_err(anyhow::Error::msg)?;
    let record: Value = serde_json::from_str(line)?;
    let mut case = json!({
        "name": format!("decision {} (requestId {})", logged.decision_id, logged.request_id),
        "now": context.received_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        "context": {"mode": context.mode, "cosigner_key": context.cosigner_key.as_deref()},
        "request": Value::Object(request.payload),
    });
    if let Some(origin) = &context.origin {
        case["context"]["origin"] = serde_json::to_value(origin)?;
    }
    if !logged.state.reads.is_empty() {
        case["state"] = serde_json::to_value(&logged.state.reads)?;
    }
    if let Some(hold) = logged.input["context"].get("hold") {
        let rejections: Vec<Value> = hold["rejections"]
            .as_array()
            .map(|r| r.iter().map(|r| json!({"approver": r["approver"], "reason": r["reason"]})).collect())
            .unwrap_or_default();
        let approvals: Vec<Value> =
            hold["approvals"].as_array().map(|a| a.iter().map(|a| a["approver"].clone()).collect()).unwrap_or_default();
        case["hold"] = json!({"status": hold["status"], "required": hold["required"], "approvals": approvals,
            "rejections": rejections, "reason": hold["reason"]});
    }
    case["expect"] = json!({"action": logged.answered.action});
    if let Some(reason) = &logged.answered.reason {
        case["expect"]["reason"] = json!(reason);
    }
    let file = json!({"kind": logged.kind, "cases": [case]});
    let mut out = format!(
        "# Made by cosigner-guard fixture --from-log from decision {} ({} at {}, policy revision {}, source {}).\n",
        logged.decision_id,
        logged.answered.action.as_str(),
        record["timestamp"].as_str().unwrap_or("?"),
        record["policy_revision"].as_str().unwrap_or("?"),
        logged.source
    );
    if logged.is_redacted() {
        out += &format!(
            "# Redacted: the log replaced some request fields with \"{}\" (decision_log.redact); this case\n\
             # sees the placeholder, not the values the policy saw.\n",
            crate::audit::REDACTED
        );
    }
    yaml_block(&file, 0, &mut out);
    Ok(out)
}

/// Block YAML in which every string is double-quoted (JSON escapes are YAML's): read the same by
/// YAML 1.1 and 1.2 tools, where a plain `0x5dC6…`, `0755`, `12:30` or `yes` would be a number,
/// a time or a boolean to some of them.
fn yaml_block(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    let key = |k: &str| {
        let plain = !k.is_empty()
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && k.starts_with(|c: char| c.is_ascii_alphabetic());
        if plain { k.to_string() } else { Value::from(k).to_string() }
    };
    let nested =
        |v: &Value| matches!(v, Value::Object(m) if !m.is_empty()) || matches!(v, Value::Array(a) if !a.is_empty());
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                if nested(v) {
                    out.push_str(&format!("{pad}{}:\n", key(k)));
                    yaml_block(v, indent + 2, out);
                } else {
                    out.push_str(&format!("{pad}{}: {v}\n", key(k)));
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                if nested(item) {
                    let mut inner = String::new();
                    yaml_block(item, indent + 2, &mut inner);
                    // The first line of the item goes after its dash.
                    out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
                } else {
                    out.push_str(&format!("{pad}- {item}\n"));
                }
            }
        }
        // Scalars and empty collections are their JSON text: valid YAML flow.
        other => out.push_str(&format!("{pad}{other}\n")),
    }
}
