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
    assert_eq!(kinds, ["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service"]);
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

    // Every mounted ConfigMap of policies is one of the starter set's directories.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for volume in pod["volumes"].as_array().unwrap() {
        if let Some(name) =
            volume["configMap"]["name"].as_str().and_then(|n| n.strip_prefix("cosigner-guard-policies-"))
        {
            assert!(root.join("policies").join(name).is_dir(), "policies/{name}");
        }
    }

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
    assert!(allowed.contains("read") && !allowed.contains("reboot"), "the filter was read ({} calls)", allowed.len());
    assert!(allowed.contains("setpriority"), "the shadow evaluator's setpriority is allowed");
    assert!(unit.lines().any(|l| l == "SystemCallErrorNumber=EPERM"), "a denied call returns EPERM");
}
