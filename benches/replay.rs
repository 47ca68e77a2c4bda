//! Replay throughput: a 100,000-record decision log, written by deciding a mix of the example
//! requests with the starter set (velocity limits included, so records carry state reads), then
//! replayed against the same set — which must change nothing. Also the hash chain's cost: sealing
//! each record as the writer does, and `log verify` over the sealed file.
//!
//!     cargo bench --bench replay [-- RECORDS]
#![allow(clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use cosigner_guard::envelope::Mode;
use cosigner_guard::holds::HoldSettings;
use cosigner_guard::keys::CosignerKeyring;
use cosigner_guard::pipeline::Pipeline;
use cosigner_guard::policy::{CompileOptions, Evaluator, Fallbacks, PolicyStore, RequestContext};
use cosigner_guard::replay::{Replayer, replay_files};
use cosigner_guard::request::{CosignerRequest, RequestKind};
use cosigner_guard::state::StateStore;
use serde_json::{Value, json};

mod support;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let records: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let work = tempfile::tempdir()?;
    let policies = work.path().join("policies");
    support::copy_starter(&policies);
    let log = work.path().join("decisions.jsonl");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    let started = Instant::now();
    let written = runtime.block_on(write_log(&policies, &log, records, threads))?;
    let bytes = std::fs::metadata(&log)?.len();
    println!(
        "wrote {records} records ({:.0} MiB; {written}) in {:.1} s",
        bytes as f64 / (1024.0 * 1024.0),
        started.elapsed().as_secs_f64()
    );

    chain_cost(&log, &work.path().join("sealed.jsonl"))?;

    let started = Instant::now();
    let report = runtime.block_on(async {
        let replayer = Replayer::open(&policies, CompileOptions::default(), Fallbacks::default(), threads)?;
        replay_files(Arc::new(replayer), std::slice::from_ref(&log), threads * 2).await
    })?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "replayed {} decisions in {seconds:.2} s on {threads} threads: {:.0} decisions/s; changed {}, skipped {}, unreplayable {}",
        report.total,
        report.total as f64 / seconds,
        report.changed,
        report.skipped,
        report.unreplayable.len()
    );
    anyhow::ensure!(report.is_unchanged(), "replaying against the writing set changed decisions");
    Ok(())
}

/// What the hash chain costs the writer per record, and `log verify` per record.
fn chain_cost(log: &std::path::Path, sealed: &std::path::Path) -> anyhow::Result<()> {
    let lines: Vec<String> =
        std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(log)?)).collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 160).sum());
    let mut prev = cosigner_guard::audit::chain::GENESIS.to_string();
    let started = Instant::now();
    for line in &lines {
        let (line, hash) = cosigner_guard::audit::chain::seal(&prev, line.as_bytes());
        out.extend_from_slice(&line);
        prev = hash;
    }
    let seal_us = started.elapsed().as_secs_f64() * 1e6 / lines.len() as f64;
    std::fs::write(sealed, &out)?;
    let started = Instant::now();
    let verified =
        cosigner_guard::audit::chain::verify(&[sealed.to_path_buf()], None)?.map_err(|e| anyhow::anyhow!("{e}"))?;
    let verify_us = started.elapsed().as_secs_f64() * 1e6 / verified.records as f64;
    let mean = out.len() / lines.len();
    println!(
        "hash chain: seal {seal_us:.2} µs per record (mean {mean} bytes); log verify {verify_us:.2} µs per record"
    );
    Ok(())
}

/// Decides `records` requests through the pipeline (one in-memory store, so limits fill up) and
/// writes their records as the server does; returns the actions' tally.
async fn write_log(
    policies: &std::path::Path,
    log: &std::path::Path,
    records: usize,
    threads: usize,
) -> anyhow::Result<String> {
    let store = Arc::new(PolicyStore::open(policies, CompileOptions::default())?);
    let evaluator = Arc::new(Evaluator::new(threads, Duration::from_secs(5), Fallbacks::default())?);
    let state = Arc::new(StateStore::in_memory()?);
    let pipeline =
        Arc::new(Pipeline::new(CosignerKeyring::default(), None, store, evaluator, state, HoldSettings::default()));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/payloads");
    let read = |name: &str| -> anyhow::Result<Value> { Ok(serde_json::from_slice(&std::fs::read(root.join(name))?)?) };
    let templates = [
        (RequestKind::Transaction, read("eth_transfer.json")?),
        (RequestKind::Transaction, read("usdc_transfer.json")?),
        (RequestKind::Transaction, read("btc_one_time_address.json")?),
        (RequestKind::ConfigChange, read("whitelist_wallet.json")?),
    ];
    let mut out = std::io::BufWriter::new(std::fs::File::create(log)?);
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    let mut running = tokio::task::JoinSet::new();
    for n in 0..records {
        let (kind, template) = &templates[n % templates.len()];
        let (kind, mut payload) = (*kind, template.clone());
        payload["requestId"] = format!("bench-{n}").into();
        if payload.get("txId").is_some() {
            payload["txId"] = format!("bench-tx-{n}").into();
        }
        let pipeline = pipeline.clone();
        running.spawn(async move {
            let request = CosignerRequest::from_payload(kind, payload).expect("a request");
            let request_id = request.request_id.clone();
            let context = RequestContext {
                received_at: Utc::now(),
                mode: Mode::Jwt,
                cosigner_key: Some("bench".into()),
                origin: None,
            };
            let decided = pipeline.decide(request, &context, Instant::now() + Duration::from_secs(10)).await;
            json!({
                "decision_id": uuid::Uuid::now_v7().to_string(),
                "kind": kind,
                "requestId": request_id,
                "action": decided.decision.action,
                "reason": decided.decision.reason,
                "source": decided.decision.source.to_string(),
                "policy_revision": decided.policy_revision,
                "input": decided.input,
                "state": decided.state,
            })
        });
        while running.len() >= threads * 4 {
            record(&mut out, &mut tally, running.join_next().await.expect("a task")?)?;
        }
    }
    while let Some(done) = running.join_next().await {
        record(&mut out, &mut tally, done?)?;
    }
    out.flush()?;
    Ok(tally.iter().map(|(action, n)| format!("{action} {n}")).collect::<Vec<_>>().join(", "))
}

fn record(
    out: &mut impl Write,
    tally: &mut std::collections::BTreeMap<String, usize>,
    record: Value,
) -> anyhow::Result<()> {
    *tally.entry(record["action"].as_str().unwrap_or("?").to_string()).or_default() += 1;
    serde_json::to_writer(&mut *out, &record)?;
    out.write_all(b"\n")?;
    Ok(())
}
