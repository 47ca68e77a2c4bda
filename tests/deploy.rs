//! The deployment examples are valid and agree with the server: the systemd unit verifies, the
//! Kubernetes manifests parse, their embedded configuration loads as `serve` would load it, and the
//! probes and ports match it.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

fn manifests() -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("examples/kubernetes/cosigner-guard.yaml")).unwrap();
    yaml_serde::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("valid YAML"))
        .filter(|document| !document.is_null())
        .collect()
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn the_kubernetes_manifests_are_complete_and_well_formed() {
    let documents = manifests();
    let mut kinds: Vec<&str> = documents.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service", "Service"]);
    for document in &documents {
        assert!(document["apiVersion"].is_string(), "{document}");
        assert!(document["metadata"]["name"].is_string() && document["metadata"]["namespace"] == "cosigner-guard");
    }
    let pod = &of_kind(&documents, "Deployment")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let port = |name: &str| {
        container["ports"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["containerPort"].as_u64()
    };
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "admin");

    // The mounted ConfigMaps of policies are exactly the starter set's directories (its payloads
    // are examples, not policies).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut mounted: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|volume| volume["configMap"]["name"].as_str()?.strip_prefix("cosigner-guard-policies-"))
        .collect();
    mounted.sort_unstable();
    let mut starter: Vec<String> = std::fs::read_dir(root.join("policies"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "payloads")
        .collect();
    starter.sort_unstable();
    assert_eq!(mounted, starter);
    // The admin Service reaches the admin port.
    let admin = documents.iter().find(|d| d["metadata"]["name"] == "cosigner-guard-admin").unwrap();
    assert_eq!(admin["spec"]["ports"][0]["targetPort"], "admin");

    // The configuration loads as start-up loads it, with keys where the Secret puts them.
    let config = of_kind(&documents, "ConfigMap")["data"]["config.toml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = crate::common::keys();
    for (file, pem) in [
        ("keys/tls.crt", &keys.tls_cert_pem),
        ("keys/tls.key", &keys.tls_key_pem),
        ("keys/callback_private.pem", &keys.handler.private_pem),
        ("keys/cosigner_public.pem", &keys.primary.public_pem),
    ] {
        crate::common::write(&dir.path().join(file), pem);
    }
    std::os::unix::fs::symlink(root.join("policies"), dir.path().join("policies")).unwrap();
    let local = config.replace("/etc/cosigner-guard/", &format!("{}/", dir.path().display()));
    let local = local.replace("env:REDIS_URL", "redis://127.0.0.1:6379/0");
    crate::common::write(&dir.path().join("config.toml"), &local);
    let settings = cosigner_guard::config::Settings::load(&dir.path().join("config.toml")).expect("the config loads");
    assert_eq!(Some(u64::from(settings.server.listen.port())), port("callback"));
    assert_eq!(settings.admin.map(|a| u64::from(a.listen.port())), port("admin"));
}

/// The example unit passes `systemd-analyze verify` without a warning (`.ci/run` installs it).
#[test]
fn the_example_systemd_unit_verifies() {
    std::process::Command::new("systemd-analyze").arg("--version").output().expect("systemd-analyze is installed");
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("examples/systemd/cosigner-guard.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/cosigner-guard "));
    // verify checks that the binary exists: point it at the one just built.
    let path = dir.path().join("cosigner-guard.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/cosigner-guard", crate::common::BIN)).unwrap();
    let out = std::process::Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

/// The syscalls `group` stands for, nested groups expanded (`systemd-analyze syscall-filter`).
fn syscall_group(group: &str) -> std::collections::BTreeSet<String> {
    let out = std::process::Command::new("systemd-analyze").args(["syscall-filter", group]).output().unwrap();
    let mut calls = std::collections::BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        match line.trim() {
            "" => {}
            comment if comment.starts_with('#') => {}
            nested if nested.starts_with('@') => calls.extend(syscall_group(nested)),
            call => {
                calls.insert(call.to_string());
            }
        }
    }
    calls
}

/// The unit's syscall filter lets the shadow evaluator lower its thread's priority
/// (`setpriority`, in `@resources`, which the unit otherwise denies), and a denied call fails with
/// EPERM instead of killing the service with SIGSYS.
#[test]
fn the_unit_allows_what_the_shadow_evaluator_calls_and_never_kills_on_a_denied_call() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("examples/systemd/cosigner-guard.service")).unwrap();
    let allowed = unit_filter(&unit);
    assert!(allowed.contains("read") && !allowed.contains("reboot"), "the filter was read ({} calls)", allowed.len());
    assert!(allowed.contains("setpriority"), "the shadow evaluator's setpriority is allowed");
    assert!(unit.lines().any(|l| l == "SystemCallErrorNumber=EPERM"), "a denied call returns EPERM");
}

/// The syscalls the unit's `SystemCallFilter=` lines allow, groups expanded, denials applied.
fn unit_filter(unit: &str) -> std::collections::BTreeSet<String> {
    let mut allowed = std::collections::BTreeSet::new();
    for line in unit.lines().filter_map(|l| l.strip_prefix("SystemCallFilter=")) {
        let (deny, items) = line.strip_prefix('~').map_or((false, line), |rest| (true, rest));
        for item in items.split_whitespace() {
            let calls = if item.starts_with('@') { syscall_group(item) } else { [item.to_string()].into() };
            if deny {
                allowed.retain(|c| !calls.contains(c));
            } else {
                allowed.extend(calls);
            }
        }
    }
    allowed
}

/// The run stage of the Dockerfile: what it copies where, the directories its build stage makes for
/// the volume, its user, and the config its command serves.
struct Image {
    copies: Vec<(String, String)>,
    volume_dirs: Vec<String>,
    user: (u32, u32),
    config: String,
}

fn image() -> Image {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let run_stage = text.rsplit("\nFROM ").next().unwrap();
    let mut image = Image { copies: Vec::new(), volume_dirs: Vec::new(), user: (0, 0), config: String::new() };
    for line in text.lines().filter_map(|l| l.strip_prefix("RUN mkdir -p ")) {
        image.volume_dirs.extend(line.split_whitespace().map(|d| d.trim_start_matches("/out").to_string()));
    }
    for line in run_stage.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["COPY", src, dst] => image.copies.push((src.to_string(), dst.to_string())),
            ["USER", user] => {
                let (uid, gid) = user.split_once(':').unwrap();
                image.user = (uid.parse().unwrap(), gid.parse().unwrap());
            }
            ["CMD", ..] => {
                let command: Vec<String> = serde_json::from_str(line.trim_start_matches("CMD ")).unwrap();
                image.config = command.last().unwrap().clone();
            }
            _ => {}
        }
    }
    image
}

/// The image's exact file layout — the Dockerfile's copies, its volume directories owned by its
/// user, keys and TLS mounted where the container config says — under a temporary root, its
/// absolute paths moved under that root and its ports ephemeral: the server starts as the image's
/// user (when the tests run as root), writes its state and decision log in the volume, and decides.
#[tokio::test(flavor = "multi_thread")]
async fn the_container_layout_serves_as_its_user() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let image = image();
    assert_eq!(image.user, (65532, 65532));
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path();
    let under = |path: &str| root.join(path.trim_start_matches('/'));
    for (src, dst) in &image.copies {
        std::fs::create_dir_all(under(dst).parent().unwrap()).unwrap();
        let status = std::process::Command::new("cp").arg("-r").arg(repo.join(src)).arg(under(dst)).status().unwrap();
        assert!(status.success(), "COPY {src} {dst}");
    }
    let as_root = unsafe { libc::geteuid() } == 0;
    let (uid, gid) = image.user;
    let keys = crate::common::keys();
    let config_dir = under(&image.config).parent().unwrap().to_path_buf();
    for (path, contents) in [
        ("keys/callback_private.pem", &keys.handler.private_pem),
        ("keys/cosigner_public.pem", &keys.primary.public_pem),
        ("tls/fullchain.pem", &keys.tls_cert_pem),
        ("tls/privkey.pem", &keys.tls_key_pem),
    ] {
        crate::common::write(&config_dir.join(path), contents);
        std::fs::set_permissions(config_dir.join(path), std::fs::Permissions::from_mode(0o600)).unwrap();
        if as_root {
            std::os::unix::fs::chown(config_dir.join(path), Some(uid), Some(gid)).unwrap();
        }
    }
    for volume_dir in &image.volume_dirs {
        std::fs::create_dir_all(under(volume_dir)).unwrap();
        if as_root {
            std::os::unix::fs::chown(under(volume_dir), Some(uid), Some(gid)).unwrap();
        }
    }
    // The only edits: absolute paths under the temporary root, ports ephemeral.
    let config = std::fs::read_to_string(under(&image.config)).expect("the image's config is copied");
    let config = config
        .replace("\"/var/lib/cosigner-guard", &format!("\"{}", under("/var/lib/cosigner-guard").display()))
        .replace("0.0.0.0:8443", "127.0.0.1:0")
        .replace("0.0.0.0:9090", "127.0.0.1:0");
    let test_config = config_dir.join("config.test.toml");
    std::fs::write(&test_config, config).unwrap();
    let mut command = std::process::Command::new(crate::common::BIN);
    command.args(["--log-format", "json", "serve", "--config"]).arg(&test_config);
    if as_root {
        command.uid(uid).gid(gid);
    } else {
        eprintln!("not root: the layout runs as the current user, not {uid}");
    }
    let (_server, port, _) = crate::common::start_command(command);
    let answer = crate::common::post_signed(port, &crate::common::payload("eth_transfer.json")).await;
    assert_eq!(answer["action"], "APPROVE", "{answer}");
    let log = under("/var/lib/cosigner-guard/log/decisions.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(&log).unwrap_or_default().lines().count() == 0 {
        assert!(std::time::Instant::now() < deadline, "no decision record in {}", log.display());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(under("/var/lib/cosigner-guard/state/cosigner-guard.redb").exists());
}

/// Every feature on — shadow, holds with their webhook, velocity on Redis, a file log with
/// checkpoints, proof of origin, Fireblocks webhooks — driven through each path (a decision, a
/// hold created, notified and approved, a webhook delivery, a reload, a clean stop) under
/// `strace -f -c`: every syscall the server made is one the systemd unit's filter allows.
#[tokio::test(flavor = "multi_thread")]
async fn the_units_syscall_filter_allows_every_syscall_of_a_full_feature_run() {
    use cosigner_guard::holds::{SignedVerdict, Verdict};
    if std::process::Command::new("strace").arg("-V").output().is_err() {
        panic!("strace is not installed (.ci/run installs it)");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("examples/systemd/cosigner-guard.service")).unwrap();
    let allowed = unit_filter(&unit);
    let redis = crate::common::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    // A hold webhook that answers 200 to anything.
    let hooks = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let notify_url = format!("http://{}/hooks", hooks.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = hooks.accept().await else { return };
            let service = hyper::service::service_fn(|_request| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(
                    http_body_util::Empty::<axum::body::Bytes>::new(),
                ))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    let approver = cosigner_guard::holds::generate_approver_key().unwrap();
    crate::common::write(&dir.path().join("alice_public.pem"), &approver.public_pem);
    crate::common::write(&dir.path().join("alice_private.pem"), &approver.private_pem);
    let backend = cosigner_guard::origin::generate_ed25519().unwrap();
    crate::common::write(&dir.path().join("backend.pem"), &backend.public_pem);
    let fireblocks = cosigner_guard::keys::generate_rsa_2048().unwrap();
    crate::common::write(&dir.path().join("jwks.json"), &crate::lifecycle::jwks_of(&[("fb", &fireblocks)]));
    let spec = crate::common::Spec::starter()
        .policy(&format!("candidate_dir = {:?}", root.join("policies").display().to_string()))
        .decision_log("sink = \"file\"\npath = \"decisions.jsonl\"\ndurable = true\ncheckpoint_every = 2")
        .extra(&redis.state_toml())
        .extra(&format!(
            "[holds]\nnotify_url = {notify_url:?}\n[holds.approvers]\nalice = {:?}",
            at("alice_public.pem")
        ))
        .extra(&format!("[origin]\n[origin.keys]\nbackend = {:?}", at("backend.pem")))
        .extra(&format!("[fireblocks_webhooks]\nlisten = \"127.0.0.1:0\"\njwks = {:?}", at("jwks.json")))
        .extra("[console]\nenabled = true");
    let config = spec.write(dir.path());
    let summary = dir.path().join("strace.txt");
    let mut command = std::process::Command::new("strace");
    command.args(["-f", "-qq", "-c", "-o"]).arg(&summary).arg("--").arg(crate::common::BIN);
    command.args(["--log-format", "json", "serve", "--config"]).arg(&config);
    let (mut strace, port, seen) = crate::common::start_command(command);
    let addr_of = |message: &str| -> String {
        seen.iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["message"] == message)
            .and_then(|e| e["addr"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no {message:?} line"))
    };
    let (admin, webhooks) = (addr_of("admin listening"), addr_of("Fireblocks webhooks listening"));

    // A decision carrying an origin token; a held transfer, notified and approved; a webhook.
    let signer = cosigner_guard::origin::OriginSigner::from_pem(backend.private_pem.as_bytes()).unwrap();
    let claims = cosigner_guard::origin::claims_for(
        "ETH",
        "0.01",
        ("VAULT", "0"),
        ("VAULT", "1", None),
        "j",
        chrono::Utc::now().timestamp(),
        std::time::Duration::from_secs(600),
    );
    let mut tx = crate::common::payload("eth_transfer.json");
    tx["note"] = signer.sign(&claims, None).unwrap().into();
    assert_eq!(crate::common::post_signed(port, &tx).await["action"], "APPROVE");
    let held = crate::common::payload("usdc_large_transfer.json");
    assert_eq!(crate::common::post_signed(port, &held).await["action"], "RETRY");
    let admin_target = cosigner_guard::http_client::Target::new(&format!("http://{admin}"), None).await.unwrap();
    let id = held["txId"].as_str().unwrap();
    let (_, view) = admin_target.connect().await.unwrap().get(&format!("/holds/{id}")).await.unwrap();
    let hold = cosigner_guard::holds::from_view(&serde_json::from_slice(&view).unwrap()).unwrap();
    let key = cosigner_guard::holds::ApproverSigningKey::from_pem_file(&dir.path().join("alice_private.pem")).unwrap();
    let verdict = SignedVerdict::sign(&hold, Verdict::Approve, "", &key, chrono::Utc::now());
    let (status, _) = admin_target
        .connect()
        .await
        .unwrap()
        .post_json(&format!("/holds/{id}/verdicts"), &serde_json::to_value(&verdict).unwrap())
        .await
        .unwrap();
    assert!(status.is_success());
    // The console: its page, an invitation, a passkey sign-in begun (state documents in Redis).
    let mut console = admin_target.connect().await.unwrap();
    assert!(console.get("/console/").await.unwrap().0.is_success());
    let (status, _) = console.post_json("/approvers/invites", &serde_json::json!({"name": "bob"})).await.unwrap();
    assert!(status.is_success());
    let origin = format!("http://localhost:{}", admin.rsplit(':').next().unwrap());
    let (status, _) = console.post_with("/console/api/signin/start", &[("Origin", &origin)], "{}").await.unwrap();
    assert!(status.is_success());
    let body = crate::lifecycle::event("e-1", tx["txId"].as_str().unwrap(), "COMPLETED", 1);
    let signature = crate::lifecycle::v2(&body, "fb", &fireblocks);
    let hook = cosigner_guard::http_client::Target::new(
        &format!("https://localhost:{}", webhooks.rsplit(':').next().unwrap()),
        Some(crate::common::keys().tls_cert_pem.as_bytes()),
    )
    .await
    .unwrap();
    let (status, _) = hook
        .connect()
        .await
        .unwrap()
        .post_with("/fireblocks/webhook", &[("Fireblocks-Webhook-Signature", &signature)], body)
        .await
        .unwrap();
    assert!(status.is_success());

    // A reload, then a clean stop: signal the server itself (strace's child), and let strace write.
    let pids = std::process::Command::new("pgrep").args(["-P", &strace.0.id().to_string()]).output().unwrap();
    let server = String::from_utf8(pids.stdout).unwrap().trim().to_string();
    assert!(!server.is_empty(), "the server runs under strace");
    assert!(std::process::Command::new("kill").args(["-HUP", &server]).status().unwrap().success());
    assert_eq!(
        crate::common::post_signed(port, &crate::common::payload("btc_one_time_address.json")).await["action"],
        "APPROVE"
    );
    assert!(std::process::Command::new("kill").args(["-TERM", &server]).status().unwrap().success());
    assert_eq!(strace.wait(), Some(0), "strace (and the server under it) exit cleanly");

    let text = std::fs::read_to_string(&summary).unwrap();
    let made: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('%') && !l.starts_with('-') && !l.contains("total"))
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect();
    assert!(made.len() > 20 && made.iter().any(|c| c == "setpriority"), "the run was traced, shadow included: {text}");
    let denied: Vec<&String> = made.iter().filter(|call| !allowed.contains(call.as_str())).collect();
    assert!(denied.is_empty(), "syscalls the unit's filter denies: {denied:?}\n{text}");
}
