//! Hot reload: changes on disk go live without a restart; broken edits never change what is served.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Spec, TestServer, decide, payload, spawn, write};
use serde_json::Value;

const TX: &str = "tx_sign_request";
/// Generous for a loaded CI machine; the reload latency itself is measured by the benchmark.
const PICKUP_DEADLINE: Duration = Duration::from_secs(5);

fn rejecting(reason: &str) -> String {
    format!(
        "package cosigner.transaction\nimport rego.v1\ndecision := {{\"action\": \"REJECT\", \"reason\": {reason}}}\n"
    )
}

async fn reason(server: &TestServer) -> String {
    let answer = decide(server, "json", TX, &payload("eth_transfer.json")).await;
    answer["rejectionReason"].as_str().unwrap_or_default().to_string()
}

/// Polls until the server answers with `want`; returns how long it took.
async fn eventually(server: &TestServer, want: &str, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        let got = reason(server).await;
        if got == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < PICKUP_DEADLINE, "{what}: still answering {got:?}, expected {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status(server: &TestServer) -> Value {
    server.admin_get("/status").await.1
}

/// Polls `/status` until the last reload attempt has the given result.
async fn last_reload(server: &TestServer, result: &str) -> Value {
    let start = Instant::now();
    loop {
        let status = status(server).await;
        if status["policy"]["last_reload"]["result"] == result {
            return status;
        }
        assert!(start.elapsed() < PICKUP_DEADLINE, "no {result} reload: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_policy_is_served_without_a_restart() {
    let server = spawn(Spec::both(r#"decision := {"action": "REJECT", "reason": "v1"}"#)).await;
    assert_eq!(reason(&server).await, "v1");
    let before = status(&server).await["policy"]["revision"].clone();
    write(&server.policy_dir().join("tx.rego"), &rejecting(r#""v2""#));
    eventually(&server, "v2", "plain overwrite").await;
    let after = status(&server).await;
    assert_ne!(after["policy"]["revision"], before, "a new revision is active");
    assert_eq!(after["policy"]["last_reload"]["result"], "activated");
}

/// A module no entrypoint can reach is left out of decisions and listed in `/status`; once a
/// reloaded policy imports it, it decides again (reachability is worked out for every set).
#[tokio::test(flavor = "multi_thread")]
async fn a_module_no_entrypoint_reaches_is_listed_and_joins_once_imported() {
    let server = spawn(Spec::both(r#"decision := {"action": "REJECT", "reason": "alone"}"#)).await;
    let library = "package lib.words\nimport rego.v1\nword := \"joined\"\n";
    write(&server.policy_dir().join("lib/words.rego"), library);
    let loaded = last_reload(&server, "activated").await;
    assert_eq!(loaded["policy"]["unreached_modules"], serde_json::json!(["lib/words.rego"]));
    assert_eq!(reason(&server).await, "alone");
    write(
        &server.policy_dir().join("tx.rego"),
        "package cosigner.transaction\nimport rego.v1\nimport data.lib.words\n\
         decision := {\"action\": \"REJECT\", \"reason\": words.word}\n",
    );
    eventually(&server, "joined", "an import of the library").await;
    assert_eq!(status(&server).await["policy"]["unreached_modules"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_edit_keeps_the_last_good_set_and_shows_the_error_until_fixed() {
    let server = spawn(Spec::both(r#"decision := {"action": "REJECT", "reason": "good"}"#)).await;
    let good_revision = status(&server).await["policy"]["revision"].clone();
    write(&server.policy_dir().join("tx.rego"), "package cosigner.transaction\n\ndecision := {\"action\": \n");
    let status_now = last_reload(&server, "failed").await;
    let error = status_now["policy"]["last_reload"]["error"].as_str().unwrap();
    assert!(error.contains("tx.rego:"), "the error names the file and line: {error}");
    assert_eq!(status_now["policy"]["revision"], good_revision, "the good set stays active");
    assert_eq!(reason(&server).await, "good", "decisions still come from the good set");

    write(&server.policy_dir().join("tx.rego"), &rejecting(r#""fixed""#));
    eventually(&server, "fixed", "fixing the file recovers").await;
    assert_eq!(last_reload(&server, "activated").await["policy"]["last_reload"]["error"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn deployment_styles_are_picked_up() {
    // The reason is built from two modules and a data file, so each kind of change shows.
    let mut spec = Spec::new("", r#"decision := {"action": "REJECT"}"#);
    spec.policies = vec![
        (
            "cosigner/tx.rego",
            r#"package cosigner.transaction
import rego.v1
decision := {"action": "REJECT", "reason": sprintf("%v/%d", [data.settings.label, count(flags)])}
flags contains "a"
"#
            .to_string(),
        ),
        ("cosigner/extra.rego", "package cosigner.transaction\nimport rego.v1\nflags contains \"b\"\n".to_string()),
        ("settings/data.json", r#"{"label": "one"}"#.to_string()),
        ("cc.rego", "package cosigner.config_change\ndecision := {\"action\": \"REJECT\"}\n".to_string()),
    ];
    let server = spawn(spec).await;
    let dir = server.policy_dir();
    assert_eq!(reason(&server).await, "one/2");

    write(&dir.join("settings/data.json"), r#"{"label": "two"}"#);
    eventually(&server, "two/2", "a data-file-only change").await;

    std::fs::remove_file(dir.join("cosigner/extra.rego")).unwrap();
    eventually(&server, "two/1", "a deleted file").await;

    // An editor's save: write a temporary file beside it, then rename over the original.
    write(&dir.join("settings/.data.json.swp"), r#"{"label": "three"}"#);
    std::fs::rename(dir.join("settings/.data.json.swp"), dir.join("settings/data.json")).unwrap();
    eventually(&server, "three/1", "an atomic-rename save").await;

    // A new directory with a new module (e.g. `git checkout` of another branch).
    write(&dir.join("more/deeper/x.rego"), "package cosigner.transaction\nimport rego.v1\nflags contains \"x\"\n");
    eventually(&server, "three/2", "a new directory").await;

    // The whole directory replaced by a deploy tool.
    let staged = server.dir.path().join("staged");
    copy_tree(&dir, &staged);
    write(&staged.join("settings/data.json"), r#"{"label": "four"}"#);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::rename(&staged, &dir).unwrap();
    eventually(&server, "four/2", "a replaced directory").await;
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A Kubernetes ConfigMap mount: visible entries are symlinks through `..data`, which is re-pointed
/// atomically at a new hidden `..<version>` directory; the old one is then deleted.
struct ConfigMap<'a> {
    dir: &'a Path,
    version: usize,
}

impl<'a> ConfigMap<'a> {
    fn create(dir: &'a Path, files: &[(&str, String)]) -> Self {
        let mut map = Self { dir, version: 0 };
        map.publish(files);
        for top in ["cosigner", "part1", "part2"] {
            std::os::unix::fs::symlink(format!("..data/{top}"), dir.join(top)).unwrap();
        }
        map
    }

    fn publish(&mut self, files: &[(&str, String)]) {
        let old = self.version;
        self.version += 1;
        let version = self.dir.join(format!("..{}", self.version));
        for (path, contents) in files {
            write(&version.join(path), contents);
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(format!("..{}", self.version), &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        if old > 0 {
            std::fs::remove_dir_all(self.dir.join(format!("..{old}"))).unwrap();
        }
    }
}

/// A valid set whose answer names both of its data parts; a mixture of two sets would show.
fn set(name: &str, broken: bool) -> Vec<(&'static str, String)> {
    let tx = if broken {
        "package cosigner.transaction\ndecision := {".to_string()
    } else {
        rejecting(r#"concat("+", [data.part1.v, data.part2.v])"#)
    };
    vec![
        ("cosigner/tx.rego", tx),
        ("cosigner/cc.rego", "package cosigner.config_change\ndecision := {\"action\": \"REJECT\"}\n".to_string()),
        ("part1/data.json", format!(r#"{{"v": "{name}"}}"#)),
        ("part2/data.json", format!(r#"{{"v": "{name}"}}"#)),
    ]
}

async fn configmap_server() -> TestServer {
    let mut spec = Spec::new("", "");
    spec.policies.clear();
    let server = spawn_with_dir(spec, |dir| {
        ConfigMap::create(dir, &set("A", false));
    })
    .await;
    assert_eq!(reason(&server).await, "A+A");
    server
}

/// Spawns a server whose policy directory is laid out by `layout` before start-up.
async fn spawn_with_dir(mut spec: Spec, layout: impl FnOnce(&Path)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    layout(&policies);
    spec.policy_dir = Some(policies);
    crate::common::spawn_in(spec, dir).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configmap_symlink_swap_is_picked_up_and_hidden_versions_are_not_loaded_twice() {
    let server = configmap_server().await;
    assert_eq!(status(&server).await["policy"]["file_count"], 4, "only the visible files count");
    let mut map = ConfigMap { dir: &server.policy_dir(), version: 1 };
    map.publish(&set("B", false));
    eventually(&server, "B+B", "a ..data swap").await;
    assert_eq!(status(&server).await["policy"]["file_count"], 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_across_many_reloads_see_only_whole_valid_sets() {
    let server = Arc::new(configmap_server().await);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (server, stop, answered) = (server.clone(), stop.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            let body = serde_json::to_vec(&payload("eth_transfer.json")).unwrap();
            let mut connection = server.target.connect().await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                let (status, answer) =
                    connection.post("/tx_sign_request", body.clone()).await.expect("request succeeds");
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
                let answer: Value = serde_json::from_slice(&answer).unwrap();
                let reason = answer["rejectionReason"].as_str().unwrap();
                assert!(
                    reason == "A+A" || reason == "B+B",
                    "one whole valid set, never a mixture or a fallback: {reason}"
                );
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut map = ConfigMap { dir: &server.policy_dir(), version: 1 };
    let mut activations_seen = 0;
    for round in 0..12 {
        let (name, broken) = match round % 3 {
            0 => ("B", false),
            1 => ("X", true),
            _ => ("A", false),
        };
        map.publish(&set(name, broken));
        let want = if broken { "failed" } else { "activated" };
        last_reload(&server, want).await;
        if !broken {
            activations_seen += 1;
            eventually(&server, &format!("{name}+{name}"), "the new set").await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("no client saw a failure");
    }
    assert_eq!(activations_seen, 8);
    assert!(answered.load(Ordering::Relaxed) > 100, "the load ran throughout");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_100_writes_causes_a_small_bounded_number_of_reloads() {
    let server =
        spawn(Spec::both(r#"decision := {"action": "REJECT", "reason": sprintf("%d", [count(data.burst)])}"#)).await;
    let before = status(&server).await["policy"]["reloads"].clone();
    for i in 0..100 {
        write(&server.policy_dir().join(format!("burst/f{i}.rego")), &format!("package burst.m{i}\nx := {i}\n"));
    }
    eventually(&server, "100", "all 100 files").await;
    // One more write after the burst, waited for: every reload the burst caused came before it.
    write(&server.policy_dir().join("burst/last.rego"), "package burst.last\nx := 100\n");
    eventually(&server, "101", "the write after the burst").await;
    let after = status(&server).await["policy"]["reloads"].clone();
    let attempts =
        |v: &Value| v["activated"].as_u64().unwrap() + v["unchanged"].as_u64().unwrap() + v["failed"].as_u64().unwrap();
    let reloads = attempts(&after) - attempts(&before) - 1;
    assert!((1..=3).contains(&reloads), "{reloads} reloads for one burst");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pathological_policy_fails_its_reload_in_bounded_time_and_later_reloads_still_work() {
    let server =
        spawn(Spec::both(r#"decision := {"action": "REJECT", "reason": "good"}"#).extra("[reload]\ntimeout_ms = 300"))
            .await;
    // regorus parses deeply nested literals in exponential time.
    let nested = format!("package slow\nx := {}1{}\n", "[".repeat(15), "]".repeat(15));
    write(&server.policy_dir().join("slow.rego"), &nested);
    let failed = last_reload(&server, "failed").await;
    assert!(failed["policy"]["last_reload"]["error"].as_str().unwrap().contains("longer than"), "{failed}");
    assert_eq!(reason(&server).await, "good", "the server kept serving");
    std::fs::remove_file(server.policy_dir().join("slow.rego")).unwrap();
    write(&server.policy_dir().join("tx.rego"), &rejecting(r#""after""#));
    eventually(&server, "after", "a later reload").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_tls_certificate_is_used_for_new_connections_and_a_broken_one_is_ignored() {
    let server = spawn(Spec::both(r#"decision := {"action": "APPROVE"}"#)).await;
    let tls_dir = server.dir.path().join("tls");
    let port = server.target_port();
    let pinned = |pem: String| async move {
        cosigner_guard::http_client::Target::new(&format!("https://localhost:{port}"), Some(pem.as_bytes()))
            .await
            .unwrap()
    };

    std::fs::write(tls_dir.join("cert.pem"), "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
        .unwrap();
    // Wait for the reload that read the broken file (and kept the working pair).
    let admin = cosigner_guard::http_client::Target::new(&format!("http://{}", server.admin), None).await.unwrap();
    let start = Instant::now();
    loop {
        let (_, text) = admin.connect().await.unwrap().get("/metrics").await.unwrap();
        if String::from_utf8_lossy(&text).contains("cosigner_guard_tls_reloads_total{result=\"failed\"} ") {
            break;
        }
        assert!(start.elapsed() < PICKUP_DEADLINE, "the broken certificate was never read");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let old = pinned(crate::common::keys().tls_cert_pem.clone()).await;
    assert!(old.connect().await.is_ok(), "a broken certificate file does not replace the working one");

    let fresh = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(tls_dir.join("key.pem"), fresh.signing_key.serialize_pem()).unwrap();
    std::fs::write(tls_dir.join("cert.pem"), fresh.cert.pem()).unwrap();
    let new = pinned(fresh.cert.pem()).await;
    let start = Instant::now();
    while new.connect().await.is_err() {
        assert!(start.elapsed() < PICKUP_DEADLINE, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A fresh client (no TLS session to resume) pinning the old certificate is refused now.
    let old = pinned(crate::common::keys().tls_cert_pem.clone()).await;
    assert!(old.connect().await.is_err(), "the old certificate is no longer served");
}
