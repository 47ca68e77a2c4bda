//! Reload benchmark: how long from a policy file written to the new decision served, for the
//! starter set and for a large set (200 policy files and a 10 MB data document), and what request
//! latency looks like while reloads happen versus without.
//!
//!     cargo run --release --example reload_bench
//!
//! Runs the real server in-process on loopback (TLS, json mode) in a temporary directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use cosigner_guard::config::Settings;
use cosigner_guard::http_client::{Connection, Target};
use serde_json::Value;

const ROUNDS: usize = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let payload = std::fs::read(root.join("policies/payloads/eth_transfer.json"))?;

    println!("== starter set ({} rounds)", ROUNDS);
    let work = tempfile::tempdir()?;
    copy_tree(&root.join("policies"), &work.path().join("policies"))?;
    let (server, _cert) = start(work.path()).await?;
    let mut conn = server.connect().await?;
    let file = work.path().join("policies/cosigner/probe.rego");
    pickup_latency(&mut conn, &payload, &file).await?;

    println!("== large set: 200 policy files + 10 MB data document ({} rounds)", ROUNDS);
    let work = tempfile::tempdir()?;
    let policies = work.path().join("policies");
    copy_tree(&root.join("policies"), &policies)?;
    for i in 0..200 {
        let rule = format!(
            "package generated.m{i}\nimport rego.v1\nlimit := data.big.limits[\"k{i}\"]\nallowed(x) if x in data.big.lists[\"k{i}\"]\n"
        );
        std::fs::create_dir_all(policies.join("generated"))?;
        std::fs::write(policies.join(format!("generated/m{i}.rego")), rule)?;
    }
    std::fs::create_dir_all(policies.join("big"))?;
    let data = big_data(10 * 1024 * 1024);
    println!("  data document: {:.1} MB", data.len() as f64 / 1e6);
    std::fs::write(policies.join("big/data.json"), data)?;
    let (server, _cert) = start(work.path()).await?;
    let mut conn = server.connect().await?;
    pickup_latency(&mut conn, &payload, &policies.join("cosigner/probe.rego")).await?;

    println!("== request latency, starter set, 1 keep-alive client, 5 s each");
    let work = tempfile::tempdir()?;
    copy_tree(&root.join("policies"), &work.path().join("policies"))?;
    let (server, _cert) = start(work.path()).await?;
    let quiet = latencies(&server, &payload, Duration::from_secs(5), None).await?;
    report("without reloads", quiet);
    let reloading =
        latencies(&server, &payload, Duration::from_secs(5), Some(work.path().join("policies/cosigner/probe.rego")))
            .await?;
    report("a reload every 500 ms", reloading);
    Ok(())
}

/// Writes a marker rule that changes the transaction decision, then polls until it is served.
async fn pickup_latency(conn: &mut Connection, payload: &[u8], file: &Path) -> anyhow::Result<()> {
    let mut samples = Vec::new();
    for round in 0..ROUNDS {
        let marker = format!("round-{round}");
        let rule = format!("package cosigner.transaction\nimport rego.v1\nviolations contains \"{marker}\"\n");
        let written = Instant::now();
        std::fs::write(file, rule)?;
        loop {
            let (_, body) = conn.post("/tx_sign_request", payload.to_vec()).await?;
            let answer: Value = serde_json::from_slice(&body)?;
            if answer["rejectionReason"].as_str().is_some_and(|r| r.contains(&marker)) {
                break;
            }
            anyhow::ensure!(written.elapsed() < Duration::from_secs(30), "not picked up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples.push(written.elapsed());
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    samples.sort();
    println!(
        "  file written -> new decision served: median {:?}, max {:?} (includes the 300 ms debounce)",
        samples[samples.len() / 2],
        samples[samples.len() - 1]
    );
    Ok(())
}

async fn latencies(
    server: &Target,
    payload: &[u8],
    run: Duration,
    reload_file: Option<PathBuf>,
) -> anyhow::Result<Vec<Duration>> {
    let writer = reload_file.map(|file| {
        tokio::spawn(async move {
            let mut n = 0u64;
            let start = Instant::now();
            while start.elapsed() < run {
                n += 1;
                let rule = format!("package cosigner.transaction\nimport rego.v1\nmarker_{n} := true\n");
                let _ = std::fs::write(&file, rule);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    });
    let mut conn = server.connect().await?;
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < run {
        let t = Instant::now();
        let (status, _) = conn.post("/tx_sign_request", payload.to_vec()).await?;
        anyhow::ensure!(status == 200, "request failed: {status}");
        samples.push(t.elapsed());
    }
    if let Some(writer) = writer {
        writer.await?;
    }
    Ok(samples)
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "  {label}: {} requests, p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        samples.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        samples[samples.len() - 1]
    );
}

/// A data document of about `bytes` bytes: limits and lists keyed k0..kN.
fn big_data(bytes: usize) -> String {
    let mut limits = serde_json::Map::new();
    let mut lists = serde_json::Map::new();
    let mut i = 0;
    let mut size = 0;
    while size < bytes {
        let list: Vec<String> = (0..20).map(|j| format!("0x{:040x}", i * 20 + j)).collect();
        size += 20 * 45 + 30;
        limits.insert(format!("k{i}"), Value::from(format!("{}.5", i)));
        lists.insert(format!("k{i}"), Value::from(list));
        i += 1;
    }
    serde_json::json!({"limits": limits, "lists": lists}).to_string()
}

async fn start(dir: &Path) -> anyhow::Result<(Target, String)> {
    let tls = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let handler = cosigner_guard::keys::generate_rsa_2048()?;
    std::fs::write(dir.join("cert.pem"), tls.cert.pem())?;
    std::fs::write(dir.join("key.pem"), tls.signing_key.serialize_pem())?;
    std::fs::write(dir.join("handler.pem"), &handler.private_pem)?;
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\
         [protocol]\nmodes = [\"json\"]\nsigning_key = \"handler.pem\"\n\
         [policy]\ndir = \"policies\"\n[admin]\nenabled = false\n",
    )?;
    let server = cosigner_guard::app::build(Settings::load(&config)?).await.context("server")?;
    let port = server.local_addr()?.port();
    tokio::spawn(server.serve(std::future::pending()));
    let cert = tls.cert.pem();
    Ok((Target::new(&format!("https://localhost:{port}"), Some(cert.as_bytes())).await?, cert))
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}
