//! Load generator: starts the release server binary with the starter policies and the decision
//! log on, drives it over HTTPS with keep-alive connections and a pool of pre-signed distinct
//! requests, and reports throughput, latency percentiles, errors, the server's CPU time per
//! decision (from /proc) against the RS256 sign + verify floor measured here, and its memory.
//!
//!     cargo build --release && cargo run --release --example loadgen -- --mode jwt
//!
//! `--rate R` runs open-loop at R requests/s (a request its connection could not send on time counts
//! from its scheduled time);
//! without it, closed-loop at maximum. `--half` measures the maximum, then runs open-loop at half.
//!
//! The starter policies read and record a daily limit per source vault on every approval (the
//! embedded state store, on disk): `--limits off` serves them without it (the baseline),
//! `--redis URL` keeps the state in Redis, and `--vaults N` spreads the requests over N source
//! vaults (one key each; a read costs the same however many events its window holds).
//! `--shadow` decides every request again with a candidate set, after its answer (the cost of
//! shadow evaluation on the answers: compare with a run without it). `--origin` requires proof of
//! origin (`data.origin.required`): each request's note carries an Ed25519 token for its transfer.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use cosigner_guard::http_client::Target;
use cosigner_guard::keys::{SigningAlgorithm, generate, generate_rsa_2048};
use cosigner_guard::simulator::sign_request;
use jsonwebtoken::EncodingKey;
use serde_json::Value;

#[derive(Parser, Clone)]
#[command(after_help = "\
The runs behind docs/performance.md's rows against the performance targets (release build; this
machine drifts, so compare only runs made back to back):
  server CPU per decision, json    loadgen --mode json --connections 16 --duration 4
  jwt against the RSA floor         loadgen --mode jwt --connections 16 --duration 4
  p99 and CPU at half the maximum   loadgen --mode json --connections 16 --half
Other rows: --redis URL (state in Redis), --limits off (no state), --shadow, --origin, --eval-threads 1,
--pool 60000 --duration 8 (every request a new transaction). Every run reports throughput,
p50/p90/p99/p99.9, errors (an answer that is not an approval counts as one: every request of the
pool is one the starter approves), server CPU per decision against the RSA floor, and RSS.")]
struct Args {
    /// `jwt` or `json`.
    #[arg(long, default_value = "jwt")]
    mode: String,
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Seconds of measurement (after a 1 s warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Open-loop target rate (requests/s); closed-loop at maximum without it.
    #[arg(long)]
    rate: Option<f64>,
    /// Measure the maximum closed-loop, then run open-loop at half of it.
    #[arg(long)]
    half: bool,
    /// Distinct pre-signed requests in the pool.
    #[arg(long, default_value_t = 1000)]
    pool: usize,
    /// The server binary.
    #[arg(long, default_value = "target/release/cosigner-guard")]
    binary: PathBuf,
    /// Sign answers ES256 (P-256) instead of RS256.
    #[arg(long)]
    es256: bool,
    /// `on` (the starter's daily limit per vault) or `off` (no state reads or records).
    #[arg(long, default_value = "on")]
    limits: String,
    /// Keep the state in this Redis instead of the embedded store.
    #[arg(long)]
    redis: Option<String>,
    /// Source vaults the requests are spread over (each its own daily-limit key).
    #[arg(long, default_value_t = 100)]
    vaults: usize,
    /// Also shadow every decision with a candidate set (a copy of the starter): `[policy] candidate_dir`.
    #[arg(long)]
    shadow: bool,
    /// Require proof of origin: an Ed25519 backend key in `[origin]`, a token in each request's note.
    #[arg(long)]
    origin: bool,
    /// `policy.eval_threads` (the server's default: one per core).
    #[arg(long)]
    eval_threads: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !args.binary.exists() {
        bail!("{} not found: run `cargo build --release` first", args.binary.display());
    }
    let work = tempfile::tempdir()?;
    let backend = cosigner_guard::origin::generate_ed25519()?;
    let (cosigner_private, cert) = write_setup(work.path(), &args, &backend.public_pem)?;
    let mut server = Server::start(&args.binary, &work.path().join("config.toml"))?;
    let target = Target::new(&format!("https://localhost:{}", server.port), Some(cert.as_bytes())).await?;
    let signer = args.origin.then(|| cosigner_guard::origin::OriginSigner::from_pem(backend.private_pem.as_bytes()));
    let (path, bodies) = pool(&args, root, &cosigner_private, signer.transpose()?.as_ref())?;
    let bodies = Arc::new(bodies);

    // Measure decisions the starter makes in production: approvals, not refusals.
    let (_, answer) = target.connect().await?.post(&path, bodies[0].clone()).await?;
    if !approves(&answer) {
        bail!("the first request was not approved: {}", String::from_utf8_lossy(&claims(&answer)));
    }

    let floor = crypto_floor_us();
    println!("crypto floor (aws-lc-rs RSA-2048 sign + verify, this run): {floor:.1} µs");
    run(&target, &path, &bodies, &args, None, Duration::from_secs(1)).await?; // warm-up

    let rate = if args.half {
        let max = measure(&server, &target, &path, &bodies, &args, None, floor, "closed loop, maximum").await?;
        Some(max / 2.0)
    } else {
        args.rate
    };
    let label = match rate {
        Some(r) => format!("open loop at {r:.0} req/s"),
        None => "closed loop, maximum".to_string(),
    };
    measure(&server, &target, &path, &bodies, &args, rate, floor, &label).await?;
    server.stop();
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    server: &Server,
    target: &Target,
    path: &str,
    bodies: &Arc<Vec<Vec<u8>>>,
    args: &Args,
    rate: Option<f64>,
    floor: f64,
    label: &str,
) -> anyhow::Result<f64> {
    let cpu_before = server.cpu_seconds()?;
    let started = Instant::now();
    let outcome = run(target, path, bodies, args, rate, Duration::from_secs(args.duration)).await?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = server.cpu_seconds()? - cpu_before;
    let mut latencies = outcome.latencies;
    latencies.sort_unstable();
    let n = latencies.len();
    let at = |q: f64| latencies.get(((n as f64 * q) as usize).min(n.saturating_sub(1))).copied().unwrap_or_default();
    let throughput = n as f64 / wall;
    let cpu_us = cpu * 1e6 / n.max(1) as f64;
    let (rss, hwm) = server.memory_kb()?;
    println!("== {} mode, {label}, {} connections, {:.0} s", args.mode, args.connections, wall);
    println!(
        "  decisions: {n}, errors (failed or not approved): {}, throughput: {throughput:.0} req/s",
        outcome.errors
    );
    println!(
        "  latency: p50 {:?}, p90 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        latencies.last().copied().unwrap_or_default()
    );
    println!("  server CPU: {cpu_us:.1} µs per decision ({:.2} × the crypto floor)", cpu_us / floor);
    println!("  server memory: RSS {:.1} MB (peak {:.1} MB)", rss as f64 / 1024.0, hwm as f64 / 1024.0);
    Ok(throughput)
}

struct Outcome {
    latencies: Vec<Duration>,
    errors: u64,
}

/// Drives the server for `duration`: closed-loop, or open-loop at `rate` spread over the connections.
async fn run(
    target: &Target,
    path: &str,
    bodies: &Arc<Vec<Vec<u8>>>,
    args: &Args,
    rate: Option<f64>,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let errors = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let mut connection = target.connect().await?;
        let (bodies, errors, next, path) = (bodies.clone(), errors.clone(), next.clone(), path.to_string());
        let interval = rate.map(|r| Duration::from_secs_f64(args.connections as f64 / r));
        let connections = args.connections;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            // Spread the connections' first sends over one interval.
            let mut scheduled = start + interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / connections as f64));
            while start.elapsed() < duration {
                // Open loop: a request that is due while its connection still waits for the previous
                // answer counts from when it was due (the server's backlog is its latency); one that
                // waits for its time counts from when it is sent, because the timer wakes up to 1 ms
                // late and that slack is the client's, not the server's.
                let sent = match interval {
                    Some(_) if Instant::now() >= scheduled => scheduled,
                    Some(_) => {
                        tokio::time::sleep_until(scheduled.into()).await;
                        Instant::now()
                    }
                    None => Instant::now(),
                };
                let i = next.fetch_add(1, Ordering::Relaxed) as usize % bodies.len();
                match connection.post(&path, bodies[i].clone()).await {
                    Ok((status, body)) if status.is_success() && approves(&body) => latencies.push(sent.elapsed()),
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if let Some(interval) = interval {
                    scheduled += interval;
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    Ok(Outcome { latencies, errors: errors.load(Ordering::Relaxed) })
}

/// Pre-built request bodies: the documented 0.01 ETH transfer (its rawTx checked on every request)
/// under distinct requestIds, signed once in jwt mode; with `origin`, a token for it in its note.
fn pool(
    args: &Args,
    root: &Path,
    cosigner_private: &str,
    origin: Option<&cosigner_guard::origin::OriginSigner>,
) -> anyhow::Result<(String, Vec<Vec<u8>>)> {
    let base: Value = serde_json::from_slice(&std::fs::read(root.join("policies/payloads/eth_transfer.json"))?)?;
    let key = EncodingKey::from_rsa_pem(cosigner_private.as_bytes())?;
    let mut bodies = Vec::with_capacity(args.pool);
    for i in 0..args.pool {
        let mut payload = base.clone();
        let id = format!("9c794cee-7e27-46c9-9e9a-{i:012}");
        payload["txId"] = Value::from(id.clone());
        payload["requestId"] = Value::from(id.clone());
        payload["sourceId"] = Value::from((i % args.vaults).to_string());
        // The key that signs is the source vault's (BIP-44's account element): another vault's
        // would be a conflict, and the request refused.
        payload["rawTx"][0]["keyDerivationPath"] = Value::from(format!("[ 44, 60, {}, 0, 0 ]", i % args.vaults));
        if let Some(signer) = origin {
            let source = (i % args.vaults).to_string();
            let dest = ("VAULT", "1", Some("0x5dC69B1Fbb13Bafd09af88a782F0F285772Ad5f8"));
            let life = Duration::from_secs(3600);
            let now = chrono::Utc::now().timestamp();
            let claims = cosigner_guard::origin::claims_for("ETH", "0.01", ("VAULT", &source), dest, &id, now, life);
            payload["note"] = Value::from(signer.sign(&claims, Some("backend"))?);
        }
        bodies.push(match args.mode.as_str() {
            "jwt" => sign_request(&payload, &key)?.into_bytes(),
            "json" => serde_json::to_vec(&payload)?,
            other => bail!("--mode {other}: expected jwt or json"),
        });
    }
    let path = if args.mode == "jwt" { "/v2/tx_sign_request" } else { "/tx_sign_request" };
    Ok((path.to_string(), bodies))
}

/// Whether an answer approves: every request of the pool is one the starter approves, so anything
/// else counts as an error.
fn approves(body: &[u8]) -> bool {
    let needle: &[u8] = b"\"APPROVE\"";
    claims(body).windows(needle.len()).any(|w| w == needle)
}

/// An answer's JSON: the body in json mode, the JWT's claims in jwt mode.
fn claims(body: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    if body.first() == Some(&b'{') {
        return body.to_vec();
    }
    let payload = body.split(|b| *b == b'.').nth(1).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap_or_default()
}

/// Microseconds for one RSA-2048 PKCS#1 SHA-256 sign plus one verify, with aws-lc-rs.
fn crypto_floor_us() -> f64 {
    use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, UnparsedPublicKey};
    let Ok(pair) = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048) else { return f64::NAN };
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pair.public_key().as_ref().to_vec());
    let mut signature = vec![0; pair.public_modulus_len()];
    let rounds = 500;
    let started = Instant::now();
    for i in 0..rounds {
        let message = format!("header.payload.{i}");
        if pair.sign(&RSA_PKCS1_SHA256, &rng, message.as_bytes(), &mut signature).is_err()
            || public.verify(message.as_bytes(), &signature).is_err()
        {
            return f64::NAN;
        }
    }
    started.elapsed().as_secs_f64() * 1e6 / rounds as f64
}

/// Keys, certificate and a config serving (a copy of) the starter policies with the decision log
/// to a file.
fn write_setup(dir: &Path, args: &Args, backend_public: &str) -> anyhow::Result<(String, String)> {
    let tls = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let algorithm = if args.es256 { SigningAlgorithm::Es256 } else { SigningAlgorithm::Rs256 };
    let handler = generate(algorithm)?;
    let cosigner = generate_rsa_2048()?;
    // The TLS files apart from the decision log: their directory is watched for changes.
    std::fs::create_dir(dir.join("tls"))?;
    std::fs::write(dir.join("tls/cert.pem"), tls.cert.pem())?;
    std::fs::write(dir.join("tls/key.pem"), tls.signing_key.serialize_pem())?;
    std::fs::write(dir.join("handler.pem"), &handler.private_pem)?;
    std::fs::write(dir.join("cosigner.pem"), &cosigner.public_pem)?;
    // Apart from the decision log and the state: the policy directory's parent is watched.
    let policies = dir.join("set/policies");
    cosigner_guard::dev::write_starter_policies(&policies)?;
    let data_path = policies.join("treasury/data.json");
    let mut data: Value = serde_json::from_slice(&std::fs::read(&data_path)?)?;
    data["source_vaults"] = (0..args.vaults).map(|v| Value::from(v.to_string())).collect();
    data["daily_limit_per_vault"]["ETH"] = Value::from("1000000");
    if args.limits == "off" {
        data.as_object_mut().context("data")?.remove("daily_limit_per_vault");
    }
    std::fs::write(&data_path, serde_json::to_vec(&data)?)?;
    let candidate = if args.shadow {
        let candidate = dir.join("set/candidate");
        cosigner_guard::dev::write_starter_policies(&candidate)?;
        std::fs::write(candidate.join("treasury/data.json"), serde_json::to_vec(&data)?)?;
        format!("candidate_dir = {:?}\n", candidate.display().to_string())
    } else {
        String::new()
    };
    let threads = args.eval_threads.map(|n| format!("eval_threads = {n}\n")).unwrap_or_default();
    let origin = if args.origin {
        std::fs::write(dir.join("backend.pem"), backend_public)?;
        std::fs::write(policies.join("origin/data.json"), r#"{"required": true}"#)?;
        "[origin]\n[origin.keys]\nbackend = \"backend.pem\"\n"
    } else {
        ""
    };
    let state = match &args.redis {
        Some(url) => format!("[state]\nbackend = \"redis\"\nurl = {url:?}\n"),
        None => String::new(),
    };
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\n\
         [protocol]\nmodes = [\"jwt\", \"json\"]\nsigning_key = \"handler.pem\"\nsigning_algorithm = \"{}\"\n\
         [protocol.cosigner_keys]\nbench = \"cosigner.pem\"\n\
         [policy]\ndir = {:?}\n{candidate}{threads}[admin]\nenabled = false\n\
         [decision_log]\nsink = \"file\"\npath = \"decisions.jsonl\"\n[log]\nformat = \"json\"\nlevel = \"warn\"\n{state}{origin}",
        algorithm.as_str(),
        policies.display().to_string()
    );
    std::fs::write(dir.join("config.toml"), config)?;
    Ok((cosigner.private_pem, tls.cert.pem()))
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(binary: &Path, config: &Path) -> anyhow::Result<Self> {
        // Info level for the start-up line that carries the port; warnings only afterwards is the
        // config's level, so override it just for the listening line via RUST_LOG.
        let mut child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn,cosigner_guard::cli=info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        let stderr = child.stderr.take().context("stderr")?;
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
        let port = loop {
            let line = lines.next().context("the server exited")??;
            if let Ok(event) = serde_json::from_str::<Value>(&line)
                && event["message"] == "listening"
            {
                let addr = event["addr"].as_str().context("addr")?.to_string();
                break addr.rsplit(':').next().context("port")?.parse()?;
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self { child, port })
    }

    /// User + system CPU time of the whole server process, from /proc.
    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        let fields: Vec<&str> = stat.rsplit_once(')').context("stat")?.1.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
        Ok(ticks / clock_ticks_per_second())
    }

    /// Resident and peak resident memory, in KiB.
    fn memory_kb(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((field("VmRSS:"), field("VmHWM:")))
    }

    fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

// A run that fails midway must not leave its server behind (it would skew every later run).
impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// `getconf CLK_TCK`, 100 on Linux unless it says otherwise.
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
