//! The `cosigner-guard` binary itself: start-up validation, key generation, serving, shutdown.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{BIN, Spec, payload, post_signed, start, start_with_log};
use cosigner_guard::keys::HandlerKey;

fn approve_all() -> Spec {
    Spec::both(r#"decision := {"action": "APPROVE"}"#)
}

/// `Type=notify`: READY=1 once the server listens, STOPPING=1 when it begins to stop.
#[test]
fn systemd_is_told_when_the_server_is_ready_and_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let config = approve_all().write(dir.path());
    let (mut child, _, _) = start_with_log(&config, &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);
    let mut buf = [0; 64];
    let n = socket.recv(&mut buf).expect("READY=1");
    assert_eq!(&buf[..n], b"READY=1");
    child.signal("-TERM");
    let n = socket.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert_eq!(child.wait(), Some(0));
}

/// An installed binary starts a project anywhere: `init` writes one that tests and checks clean;
/// `serve --dev` away from a repository says what it needs instead of half-creating a set-up.
#[test]
fn init_starts_a_project_and_dev_mode_says_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("treasury-guard");
    let out = Command::new(BIN).arg("init").arg(&project).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let test = Command::new(BIN).args(["test", "--fail-on-empty"]).arg(project.join("policies")).output().unwrap();
    assert!(test.status.success(), "{}", String::from_utf8_lossy(&test.stdout));
    let check = Command::new(BIN).args(["check", "--config"]).arg(project.join("config.toml")).output().unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let again = Command::new(BIN).arg("init").arg(&project).output().unwrap();
    assert_eq!(again.status.code(), Some(1), "an existing project is not overwritten");

    let elsewhere = tempfile::tempdir().unwrap();
    let dev = Command::new(BIN).args(["serve", "--dev"]).current_dir(elsewhere.path()).output().unwrap();
    let said = String::from_utf8_lossy(&dev.stderr);
    assert_eq!(dev.status.code(), Some(1));
    assert!(said.contains("cosigner-guard init DIR"), "{said}");
    assert!(!elsewhere.path().join(".cosigner-guard-dev").exists(), "nothing half-created");
}

#[test]
fn completions_and_the_version_with_its_git_revision() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN).args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains("holds") && script.contains("keygen"), "{shell}: {script}");
    }
    // Bash completes past the first word: the subcommands of `holds`, and their options.
    let script = String::from_utf8(Command::new(BIN).args(["completions", "bash"]).output().unwrap().stdout).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("completion.bash"), script).unwrap();
    let complete = |words: &str, prev: &str| {
        let probe = format!(
            "source completion.bash; COMP_WORDS=({words} ''); COMP_CWORD=${{#COMP_WORDS[@]}}; COMP_CWORD=$((COMP_CWORD-1)); \
             _cosigner__guard cosigner-guard '' {prev}; echo \"${{COMPREPLY[*]}}\""
        );
        let out = Command::new("bash").arg("-c").arg(probe).current_dir(dir.path()).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(complete("cosigner-guard", "cosigner-guard").contains("holds"));
    assert!(
        complete("cosigner-guard holds", "holds").contains("approve"),
        "{}",
        complete("cosigner-guard holds", "holds")
    );
    assert!(complete("cosigner-guard state release t", "t").contains("--reason"));
    let out = Command::new(BIN).arg("--version").output().unwrap();
    let version = String::from_utf8(out.stdout).unwrap();
    let expected = format!("cosigner-guard {} (", env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&expected) && version.trim_end().ends_with(')'), "{version}");
}

#[test]
fn keygen_writes_an_rsa_2048_pair_prints_it_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN).args(["keygen", "--out"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let key = HandlerKey::from_pem_file(&dir.path().join("callback_private.pem")).expect("a usable RSA-2048 key");
    let public = std::fs::read_to_string(dir.path().join("callback_public.pem")).unwrap();
    assert_eq!(public, key.public_pem(), "the public file matches the private key");
    assert!(stdout.contains(&public), "the public key is printed");
    assert!(stdout.contains(key.fingerprint()), "its fingerprint is printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("callback_private.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the private key is readable by its owner only");
    }
    let again = Command::new(BIN).args(["keygen", "--out"]).arg(dir.path()).output().unwrap();
    assert_eq!(again.status.code(), Some(1), "an existing key is never overwritten");
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("callback_private.pem already exists: not overwriting a key"), "{said}");

    let es = tempfile::tempdir().unwrap();
    let out = Command::new(BIN).args(["keygen", "--algorithm", "es256", "--out"]).arg(es.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pem = std::fs::read(es.path().join("callback_private.pem")).unwrap();
    let key = cosigner_guard::keys::HandlerKey::from_pem_for(&pem, cosigner_guard::keys::SigningAlgorithm::Es256)
        .expect("a usable P-256 key");
    assert!(String::from_utf8(out.stdout).unwrap().contains(key.fingerprint()));
}

#[test]
fn a_bad_configuration_stops_start_up_with_a_message_naming_the_fault() {
    let big_key = {
        use aws_lc_rs::encoding::AsDer;
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa3072).unwrap();
        pem::encode(&pem::Pem::new("PRIVATE KEY", pair.as_der().unwrap().as_ref().to_vec()))
    };
    type Edit = Box<dyn Fn(&std::path::Path, String) -> String>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "APPROVE as the fallback",
            Box::new(|_, c| c.replace("[policy]", "[policy]\non_error = \"APPROVE\"")),
            "on_error",
        ),
        (
            "IGNORE as the fallback",
            Box::new(|_, c| c.replace("[policy]", "[policy]\non_error = \"IGNORE\"")),
            "on_error",
        ),
        ("no modes", Box::new(|_, c| c.replace(r#"modes = ["jwt", "json"]"#, "modes = []")), "protocol.modes"),
        ("an unknown mode", Box::new(|_, c| c.replace(r#"modes = ["jwt", "json"]"#, r#"modes = ["xml"]"#)), "xml"),
        ("a misspelt key", Box::new(|_, c| c.replace("listen =", "lisen =")), "lisen"),
        (
            "a signing key that is not RSA-2048",
            Box::new(move |dir, c| {
                std::fs::write(dir.join("keys/handler.pem"), &big_key).unwrap();
                c
            }),
            "protocol.signing_key",
        ),
        (
            "a Co-signer key that is not a public key",
            Box::new(|dir, c| {
                std::fs::write(dir.join("keys/backup.pem"), "not a key").unwrap();
                c
            }),
            "protocol.cosigner_keys.backup",
        ),
        (
            "ES256 with an RSA key",
            Box::new(|_, c| c.replace("[protocol]", "[protocol]\nsigning_algorithm = \"ES256\"")),
            "protocol.signing_key",
        ),
        ("a missing Co-signer key file", Box::new(|_, c| c.replace("keys/primary.pem", "keys/nope.pem")), "nope.pem"),
        (
            "no TLS and no insecure_http",
            Box::new(|_, c| c.replace("tls_cert = \"tls/cert.pem\"\n", "")),
            "server.tls_cert",
        ),
        (
            "a timeout past the Co-signer's",
            Box::new(|_, c| c.replace("[policy]", "[policy]\neval_timeout_ms = 60000")),
            "policy.eval_timeout_ms",
        ),
        (
            "a policy that does not parse",
            Box::new(|dir, c| {
                std::fs::write(dir.join("policies/tx.rego"), "package cosigner.transaction\ndecision := {").unwrap();
                c
            }),
            "tx.rego",
        ),
        (
            "a missing entrypoint",
            Box::new(|dir, c| {
                std::fs::remove_file(dir.join("policies/cc.rego")).unwrap();
                c
            }),
            "data.cosigner.config_change.decision",
        ),
        (
            "a data file that is not JSON",
            Box::new(|dir, c| {
                crate::common::write(&dir.join("policies/limits/data.json"), "{oops");
                c
            }),
            "data.json",
        ),
    ];
    for (name, edit, named) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = approve_all().write(dir.path());
        let text = edit(dir.path(), std::fs::read_to_string(&config).unwrap());
        std::fs::write(&config, text).unwrap();
        let out = Command::new(BIN).args(["serve", "--config"]).arg(&config).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: start-up fails: {stderr}");
        assert!(stderr.contains(named), "{name}: the message names {named:?}: {stderr}");
        assert!(!stderr.contains("shutting down"), "{name}: a failed start is not a shutdown: {stderr}");
    }
}

/// Pretty logs into a pipe (journald, a file, a collector) carry no colour codes; a stop says so
/// once, and ends with a last line.
#[test]
fn a_stop_is_logged_once_and_piped_logs_carry_no_colour() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let config = approve_all().write(dir.path());
    let mut child = Command::new(BIN)
        .args(["--log-format", "pretty", "serve", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.contains("cli: listening") {
        assert!(Instant::now() < deadline, "no listening line: {log}");
        let mut buf = [0; 4096];
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "exited early: {log}");
        log.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    stderr.read_to_string(&mut log).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{log}");
    assert!(!log.contains('\u{1b}'), "no ANSI escapes: {log:?}");
    assert_eq!(log.matches("shutting down").count(), 1, "{log}");
    assert!(log.trim_end().lines().last().unwrap().ends_with("stopped"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_serves_signed_decisions_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port) = start(&approve_all().write(dir.path()));
    assert_eq!(post_signed(port, &payload("eth_transfer.json")).await["action"], "APPROVE");
    child.signal("-TERM");
    assert_eq!(child.wait(), Some(0), "SIGTERM is a clean exit");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_policies_even_with_watching_off_and_reopens_the_decision_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = Spec::both(r#"decision := {"action": "REJECT", "reason": "before"}"#)
        .extra("[reload]\nwatch = false")
        .decision_log("sink = \"file\"\npath = \"logs/decisions.jsonl\"\ndurable = true")
        .write(dir.path());
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let (mut child, port) = start(&config);
    let tx = payload("eth_transfer.json");
    assert_eq!(post_signed(port, &tx).await["rejectionReason"], "before");
    crate::common::write(
        &dir.path().join("policies/tx.rego"),
        "package cosigner.transaction\ndecision := {\"action\": \"REJECT\", \"reason\": \"after\"}\n",
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(post_signed(port, &tx).await["rejectionReason"], "before", "no watching: nothing changes by itself");
    // logrotate's default: rename the file, then SIGHUP.
    let logs = dir.path().join("logs");
    std::fs::rename(logs.join("decisions.jsonl"), logs.join("decisions.jsonl.1")).unwrap();
    child.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while post_signed(port, &tx).await["rejectionReason"] != "after" {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rotated = std::fs::read_to_string(logs.join("decisions.jsonl.1")).unwrap();
    let fresh = std::fs::read_to_string(logs.join("decisions.jsonl")).expect("a new file after SIGHUP");
    assert!(!rotated.contains("\"after\""), "nothing written to the renamed file after SIGHUP");
    assert!(fresh.lines().last().unwrap().contains("\"after\""), "{fresh}");
    child.signal("-TERM");
    assert_eq!(child.wait(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_durable_record_is_on_disk_when_the_answer_arrives_even_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        approve_all().decision_log("sink = \"file\"\npath = \"durable.jsonl\"\ndurable = true").write(dir.path());
    let (mut child, port) = start(&config);
    let mut tx = payload("eth_transfer.json");
    tx["requestId"] = serde_json::json!("durable-check-1");
    assert_eq!(post_signed(port, &tx).await["action"], "APPROVE");
    child.signal("-KILL");
    assert_eq!(child.wait(), None, "killed by a signal, no chance to flush");
    let log = std::fs::read_to_string(dir.path().join("durable.jsonl")).unwrap();
    let record: serde_json::Value = serde_json::from_str(log.lines().last().expect("a record")).unwrap();
    assert_eq!(record["requestId"], "durable-check-1");
    assert_eq!(record["action"], "APPROVE");
}

#[tokio::test(flavor = "multi_thread")]
async fn key_material_can_come_from_the_environment_and_exposed_key_files_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = approve_all().write(dir.path());
    let key_file = dir.path().join("keys/handler.pem");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (mut child, port, log) = start_with_log(&config, &[]);
    assert!(
        log.iter().any(|l| l.contains("protocol.signing_key") && l.contains("readable by group or others")),
        "{log:?}"
    );
    assert!(!log.iter().any(|l| l.contains("PRIVATE KEY")), "no key material in the log");
    assert_eq!(post_signed(port, &payload("eth_transfer.json")).await["action"], "APPROVE");
    child.signal("-TERM");
    child.wait();

    // The same keys, the handler's and the TLS one, from environment variables instead of files.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"keys/handler.pem\"", "\"env:TEST_HANDLER_KEY\"")
        .replace("\"tls/key.pem\"", "\"env:TEST_TLS_KEY\"");
    std::fs::write(&config, text).unwrap();
    let pem = std::fs::read_to_string(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    std::fs::remove_file(dir.path().join("tls/key.pem")).unwrap();
    let env = [("TEST_HANDLER_KEY", pem.as_str()), ("TEST_TLS_KEY", crate::common::keys().tls_key_pem.as_str())];
    let (mut child, port, log) = start_with_log(&config, &env);
    assert!(!log.iter().any(|l| l.contains("protocol.signing_key")), "no file, no warning: {log:?}");
    assert_eq!(post_signed(port, &payload("eth_transfer.json")).await["action"], "APPROVE");
    child.signal("-TERM");
    child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decision_log_in_a_watched_directory_is_warned_about() {
    let warned = |log: &[String]| log.iter().any(|l| l.contains("decision log is in a directory watched"));
    for (path, expect_warning) in [("decisions.jsonl", true), ("tls/decisions.jsonl", true), ("logs/d.jsonl", false)] {
        let dir = tempfile::tempdir().unwrap();
        // The policies live in `policies/`, so the test directory itself is watched (as their parent).
        let config = approve_all().decision_log(&format!("sink = \"file\"\npath = {path:?}")).write(dir.path());
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let (mut child, _, log) = start_with_log(&config, &[]);
        assert_eq!(warned(&log), expect_warning, "{path}: {log:?}");
        child.signal("-TERM");
        child.wait();
    }
}

#[test]
fn keys_written_by_keygen_are_read_by_openssl_3() {
    // OpenSSL 3 (and Python `cryptography`) refuse PKCS#8 v2 Ed25519 keys: approvers' tools
    // must be able to read what keygen writes. `.ci/run` installs openssl.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN).args(["keygen", "--approver", "alice", "--out"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (file, kind) in [("alice_private.pem", "-in"), ("alice_public.pem", "-pubin")] {
        let path = dir.path().join(file);
        let args: Vec<&std::ffi::OsStr> = if kind == "-pubin" {
            vec!["pkey".as_ref(), "-pubin".as_ref(), "-in".as_ref(), path.as_os_str(), "-noout".as_ref()]
        } else {
            vec!["pkey".as_ref(), "-in".as_ref(), path.as_os_str(), "-noout".as_ref()]
        };
        let openssl = Command::new("openssl").args(args).output().expect("openssl is installed (.ci/run)");
        assert!(openssl.status.success(), "{file}: {}", String::from_utf8_lossy(&openssl.stderr));
    }
}

#[test]
fn output_piped_into_a_reader_that_stops_early_ends_quietly() {
    // `cosigner-guard holds list | head`: the closed pipe ends the command as it ends Unix tools
    // (SIGPIPE), never with a panic.
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .args(["test", "policies/"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A small pipe (one page), so the report does not fit in it and the writer meets the close.
    let stdout = child.stdout.take().unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a pipe descriptor this test owns.
    assert!(unsafe { libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) } >= 4096);
    let mut first = String::new();
    let mut reader = std::io::BufReader::with_capacity(64, stdout);
    reader.read_line(&mut first).unwrap();
    drop(reader);
    let mut stderr = child.stderr.take().unwrap();
    let status = child.wait().unwrap();
    let mut said = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut said).unwrap();
    assert!(!first.is_empty());
    assert!(!said.contains("panicked"), "{said}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}");
}

/// `send` plays the Co-signer from the installed binary: a signed request over pinned TLS, the
/// answer's signature checked; an answer signed by another key fails it.
#[tokio::test(flavor = "multi_thread")]
async fn send_drives_a_handler_as_the_cosigner_does_and_checks_the_answer() {
    let server = crate::common::spawn(crate::common::Spec::starter()).await;
    let dir = server.dir.path();
    let keys = crate::common::keys();
    crate::common::write(&dir.join("cosigner_private.pem"), &keys.primary.private_pem);
    crate::common::write(&dir.join("handler_public.pem"), &keys.handler.public_pem);
    crate::common::write(&dir.join("stranger_public.pem"), &keys.stranger.public_pem);
    let payload = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/payloads/eth_transfer.json");
    let url = format!("https://localhost:{}", server.target_port());
    let send = |handler_key: &str, extra: &[&str]| {
        std::process::Command::new(crate::common::BIN)
            .args(["send", "--url", &url, "--cert", "tls/cert.pem", "--cosigner-key", "cosigner_private.pem"])
            .args(["--handler-key", handler_key])
            .args(extra)
            .arg(&payload)
            .current_dir(dir)
            .output()
            .unwrap()
    };
    let out = send("handler_public.pem", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\"action\": \"APPROVE\""), "{stdout}");
    let out = send("stranger_public.pem", &["--fresh-id"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("signature does not verify"), "{stderr}");
    let out = send("handler_public.pem", &["--mode", "json", "--fresh-id"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("APPROVE"));
}
