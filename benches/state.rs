//! What the state store adds to a decision: one `velocity.*` read and one record, and the
//! lookup of the transaction's hold, with the embedded store (in memory, and on disk with its
//! fsync) and Redis on loopback.
//!
//!     cargo bench --bench state
//!
//! The Redis rows start `redis-server` (Debian's package) on a free port, without persistence;
//! without it they say so and are skipped. Each `decide` iteration is a new transaction of the
//! documented ETH transfer through the whole decision step (request-id guard, evaluation of the
//! starter policies, commit); `none` is the same policy set without the daily limit (no reads, no
//! records), the baseline.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use cosigner_guard::decimal::Amount;
use cosigner_guard::envelope::Mode;
use cosigner_guard::keys::CosignerKeyring;
use cosigner_guard::pipeline::Pipeline;
use cosigner_guard::policy::{CompileOptions, Evaluator, Fallbacks, PolicyStore, RequestContext};
use cosigner_guard::request::{CosignerRequest, RequestKind};
use cosigner_guard::state::{Backend, Commit, Record, StateSettings, StateStore};
use divan::Bencher;

mod support;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

const BACKENDS: [&str; 3] = ["memory", "embedded", "redis"];

struct Setup {
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    redis: Option<std::process::Child>,
    redis_url: String,
    next: AtomicU64,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(child) = &mut self.redis {
            let _ = child.kill();
        }
    }
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let redis = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .inspect_err(|e| eprintln!("redis-server not started ({e}): the redis rows are skipped"))
            .ok();
        std::thread::sleep(Duration::from_millis(300));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        Setup { runtime, dir, redis, redis_url: format!("redis://127.0.0.1:{port}/"), next: AtomicU64::new(0) }
    })
}

fn store(backend: &str, name: &str) -> Option<Arc<StateStore>> {
    let s = setup();
    let backend = match backend {
        "memory" => Backend::Memory,
        "embedded" => Backend::Embedded { dir: s.dir.path().join(name) },
        _ if s.redis.is_none() => return None,
        _ => Backend::Redis { url: s.redis_url.clone(), prefix: name.to_string() },
    };
    let _enter = s.runtime.enter();
    Some(Arc::new(StateStore::open(StateSettings { backend, ..StateSettings::default() }).expect("store")))
}

fn now_us() -> u64 {
    Utc::now().timestamp_micros() as u64
}

fn fresh_id() -> String {
    format!("bench-{}", setup().next.fetch_add(1, Ordering::Relaxed))
}

/// A read of a key holding 10, 1,000 or 10,000 events inside the window: embedded, from running
/// totals (the same cost for each); Redis sums them in its script (the cost grows with them).
#[divan::bench(args = BACKENDS, consts = [10, 1000, 10000])]
fn read_window<const EVENTS: u64>(bencher: Bencher, backend: &str) {
    let Some(store) = store(backend, &format!("read-{backend}-{EVENTS}")) else { return };
    let s = setup();
    let at = now_us();
    for n in 0..EVENTS {
        let record = Record { key: "k".into(), amount: Amount::parse("1.5").expect("amount") };
        // Oldest first, as decisions arrive.
        let commit = Commit { id: format!("seed-{n}"), at_us: at - EVENTS + n, reads: vec![], records: vec![record] };
        s.runtime.block_on(store.commit(commit)).expect("seed");
    }
    let since = at - 3_600_000_000;
    // Blocking, as on the server's evaluation threads (this thread is not a runtime worker either).
    bencher.bench(|| store.window("k", since, 3_600_000_000, "other").expect("read"));
}

/// A new transaction's record, committed with the check of one key read.
#[divan::bench(args = BACKENDS)]
fn commit_one_record(bencher: Bencher, backend: &str) {
    let Some(store) = store(backend, &format!("commit-{backend}")) else { return };
    let s = setup();
    bencher.bench(|| {
        let version = store.window("k", 0, 1, "x").expect("read").version;
        let record = Record { key: "k".into(), amount: Amount::parse("0.01").expect("amount") };
        let commit =
            Commit { id: fresh_id(), at_us: now_us(), reads: vec![("k".into(), version)], records: vec![record] };
        s.runtime.block_on(store.commit(commit)).expect("commit")
    });
}

/// Looking up a transaction's hold when it has none: what every decision pays for holds.
#[divan::bench(args = BACKENDS)]
fn hold_lookup(bencher: Bencher, backend: &str) {
    let Some(store) = store(backend, &format!("hold-{backend}")) else { return };
    let s = setup();
    bencher.bench(|| {
        s.runtime.block_on(store.hold::<cosigner_guard::holds::Hold>("no-such-transaction")).expect("lookup")
    });
}

/// The decision step for a new transaction, with the starter policies. Each one is received a day
/// after the last, so its window holds no events: the fixed cost of one read and one record.
#[divan::bench(args = ["none", "memory", "embedded", "redis"], sample_count = 200)]
fn decide(bencher: Bencher, backend: &str) {
    let s = setup();
    let (policies, backend_name) = match backend {
        "none" => (starter_without_limits(), "memory"),
        other => (Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"), other),
    };
    let Some(state) = store(backend_name, &format!("decide-{backend}")) else { return };
    let options = CompileOptions::default();
    let policy = Arc::new(PolicyStore::open(&policies, options).expect("policies"));
    let evaluator = Arc::new(Evaluator::new(1, Duration::from_secs(5), Fallbacks::default()).expect("evaluator"));
    let pipeline = Pipeline::new(CosignerKeyring::default(), None, policy, evaluator, state, Default::default());
    let body = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/payloads/eth_transfer.json"))
        .expect("payload");
    let payload: serde_json::Value = serde_json::from_slice(&body).expect("json");
    bencher
        .with_inputs(|| {
            let mut payload = payload.clone();
            let id = fresh_id();
            payload["txId"] = id.clone().into();
            payload["requestId"] = id.into();
            let request = CosignerRequest::from_payload(RequestKind::Transaction, payload).expect("request");
            let day = chrono::Duration::hours(25) * s.next.fetch_add(1, Ordering::Relaxed) as i32;
            (
                request,
                RequestContext { received_at: Utc::now() + day, mode: Mode::Json, cosigner_key: None, origin: None },
            )
        })
        .bench_local_values(|(request, context)| {
            let decided =
                s.runtime.block_on(pipeline.decide(request, &context, Instant::now() + Duration::from_secs(5)));
            assert_eq!(decided.decision.action.as_str(), "APPROVE");
            decided
        });
}

/// A copy of the starter set whose ETH transfers read and record nothing.
fn starter_without_limits() -> PathBuf {
    let dir = setup().dir.path().join("starter-without-limits");
    support::copy_starter(&dir);
    let data = dir.join("treasury/data.json");
    let mut value: serde_json::Value = serde_json::from_slice(&std::fs::read(&data).expect("data")).expect("json");
    value.as_object_mut().expect("object").remove("daily_limit_per_vault");
    std::fs::write(&data, serde_json::to_vec(&value).expect("json")).expect("write");
    dir
}
