//! The decision log as evidence: its hash chain holds across records, restarts and rotations, and
//! `cosigner-guard log verify` finds an edited, deleted, inserted or swapped record at its line.

use std::path::Path;
use std::process::Command;

use crate::common::{BIN, Spec, payload, post_signed, start};

fn verify(files: &[&Path]) -> (Option<i32>, String) {
    let out = Command::new(BIN).args(["log", "verify"]).args(files).output().unwrap();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A server configuration that approves everything and logs durably to `decisions.jsonl`, with `extra` log settings.
fn approving(extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = Spec::both(r#"decision := {"action": "APPROVE"}"#)
        .decision_log(&format!("sink = \"file\"\npath = \"decisions.jsonl\"\ndurable = true\n{extra}"))
        .write(dir.path());
    (dir, config)
}

/// Runs the server on `config` for `requests` decisions, then stops it.
async fn decide(config: &Path, requests: usize, first: usize) {
    let (mut child, port) = start(config);
    for i in first..first + requests {
        let mut tx = payload("eth_transfer.json");
        tx["requestId"] = format!("chain-{i}").into();
        post_signed(port, &tx).await;
    }
    child.signal("-TERM");
    assert_eq!(child.wait(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chain_holds_across_restarts_and_breaks_where_a_record_was_tampered_with() {
    let (dir, config) = approving("");
    decide(&config, 3, 0).await;
    decide(&config, 3, 3).await; // a restart continues the chain
    let log = dir.path().join("decisions.jsonl");
    let (code, said) = verify(&[&log]);
    assert_eq!(code, Some(0), "{said}");
    // Each clean stop signs the head: 3 records, a checkpoint, 3 more, a checkpoint.
    assert!(said.contains("ok: 8 records chained from its first record"), "{said}");

    let lines: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(String::from).collect();
    let tampered = dir.path().join("tampered.jsonl");
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "edited",
            {
                let mut l = lines.clone();
                l[2] = l[2].replace("\"APPROVE\"", "\"REJECT\"");
                l
            },
            ":3: edited",
        ),
        (
            "deleted",
            {
                let mut l = lines.clone();
                l.remove(2);
                l
            },
            ":3: out of the chain",
        ),
        (
            "inserted",
            {
                let mut l = lines.clone();
                l.insert(4, lines[1].clone());
                l
            },
            ":5: out of the chain",
        ),
        (
            "swapped",
            {
                let mut l = lines.clone();
                l.swap(1, 2);
                l
            },
            ":2: out of the chain",
        ),
    ];
    for (name, edited, at) in cases {
        std::fs::write(&tampered, edited.join("\n") + "\n").unwrap();
        let (code, said) = verify(&[&tampered]);
        assert_eq!(code, Some(2), "{name}: {said}");
        assert!(said.contains(&format!("tampered.jsonl{at}")), "{name}: {said}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chain_continues_across_rotated_files() {
    let (dir, config) = approving("max_bytes = 4096\nkeep = 10");
    decide(&config, 8, 0).await;
    let file =
        |n: usize| dir.path().join(if n == 0 { "decisions.jsonl".into() } else { format!("decisions.jsonl.{n}") });
    let rotated: Vec<_> = (1..10).map(file).filter(|p| p.exists()).collect();
    assert!(rotated.len() >= 2, "the log rotated");
    let mut oldest_first: Vec<&Path> = rotated.iter().rev().map(|p| p.as_path()).collect();
    let current = file(0);
    if current.exists() {
        oldest_first.push(&current);
    }
    let (code, said) = verify(&oldest_first);
    assert_eq!(code, Some(0), "{said}");
    // Every file after the first opens with a record naming the head it continues from.
    let text: Vec<String> = oldest_first.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    let continued =
        text.iter().skip(1).filter(|t| t.lines().next().is_some_and(|l| l.contains("log_continued"))).count();
    assert_eq!(continued, oldest_first.len() - 1, "{said}");
    assert!(said.contains(&format!("ok: {} records", 9 + continued)), "8 decisions, the checkpoint: {said}");
    // One file alone verifies from its opening record; with its first records cut, it does not.
    let newest = *oldest_first.last().unwrap();
    assert_eq!(verify(&[newest]).0, Some(0));
    let cut = dir.path().join("cut.jsonl");
    let lines: Vec<&str> = text.last().unwrap().lines().skip(1).collect();
    std::fs::write(&cut, lines.join("\n") + "\n").unwrap();
    let (code, said) = verify(&[&cut]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("records before it were deleted"), "{said}");
    // Out of order, the files are not one chain.
    oldest_first.swap(0, 1);
    assert_eq!(verify(&oldest_first).0, Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_checkpoints_prove_who_wrote_the_chain_and_a_rewritten_tail_is_found() {
    let (dir, config) = approving("checkpoint_every = 2");
    decide(&config, 5, 0).await;
    let public = dir.path().join("handler_public.pem");
    std::fs::write(&public, &crate::common::keys().handler.public_pem).unwrap();
    let log = dir.path().join("decisions.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(String::from).collect();
    let events: Vec<bool> = lines.iter().map(|l| l.starts_with("{\"event\":\"checkpoint\"")).collect();
    assert_eq!(events, [false, false, true, false, false, true, false, true], "every 2 records, and at the stop");
    let with_key = |file: &Path| {
        let out = Command::new(BIN).args(["log", "verify", "--key"]).arg(&public).arg(file).output().unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (code, said) = with_key(&log);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("3 checkpoints signed by --key; the last at") && said.contains(":8, with 0 records after"),
        "{said}"
    );

    // Whoever can write the file can rewrite its tail, hashes included; without the key they
    // cannot sign it.
    let stranger =
        cosigner_guard::keys::HandlerKey::from_pem(crate::common::keys().stranger.private_pem.as_bytes()).unwrap();
    let mut prev = lines[2].rsplit("\"hash\":\"").next().unwrap()[..64].to_string();
    let mut forged: Vec<String> = lines[..3].to_vec();
    for line in &lines[3..5] {
        let record = line.replace("\"APPROVE\"", "\"REJECT\"");
        let body = &record[..record.find(",\"prev\":").unwrap()];
        let (sealed, hash) = cosigner_guard::audit::chain::seal(&prev, format!("{body}}}").as_bytes());
        forged.push(String::from_utf8(sealed).unwrap().trim_end().to_string());
        prev = hash;
    }
    let checkpoint = cosigner_guard::audit::chain::checkpoint(&stranger, &prev, 2).unwrap();
    forged.push(
        String::from_utf8(cosigner_guard::audit::chain::seal(&prev, &checkpoint).0).unwrap().trim_end().to_string(),
    );
    let tampered = dir.path().join("rewritten.jsonl");
    std::fs::write(&tampered, forged.join("\n") + "\n").unwrap();
    assert_eq!(verify(&[&tampered]).0, Some(0), "the chain alone cannot tell");
    let (code, said) = with_key(&tampered);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("rewritten.jsonl:6: a checkpoint whose signature does not verify"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torn_tail_is_cut_back_and_the_chain_continues_from_the_last_sealed_record() {
    let (dir, config) = approving("");
    decide(&config, 2, 0).await;
    let log = dir.path().join("decisions.jsonl");
    // What a crash or a full disk leaves: the start of a record after the last sealed one.
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    file.write_all(b"{\"decision_id\":\"torn").unwrap();
    drop(file);
    decide(&config, 2, 2).await;
    let (code, said) = verify(&[&log]);
    assert_eq!(code, Some(0), "the chain continues from the last sealed record: {said}");
    assert!(said.contains("from its first record"), "not restarted from the genesis hash: {said}");
    let text = std::fs::read_to_string(&log).unwrap();
    let cut: serde_json::Value =
        serde_json::from_str(text.lines().find(|l| l.contains("\"event\":\"cut\"")).expect("a cut record")).unwrap();
    assert_eq!(cut["dropped_bytes"], 20, "it says how much was dropped");
    assert!(!text.contains("torn"), "the fragment is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_with_a_key_fails_when_nothing_signed_covers_the_records() {
    let (dir, config) = approving("checkpoint_every = 0");
    decide(&config, 3, 0).await;
    let log = dir.path().join("decisions.jsonl");
    let public = dir.path().join("handler_public.pem");
    std::fs::write(&public, &crate::common::keys().handler.public_pem).unwrap();
    let run = |log: &Path, extra: &[&str]| {
        let out =
            Command::new(BIN).args(["log", "verify", "--key"]).arg(&public).args(extra).arg(log).output().unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    // A log rewritten with fresh hashes and its checkpoints deleted looks like this one.
    let (code, said) = run(&log, &[]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("no signed checkpoint"), "{said}");

    // Records after the last checkpoint beyond what the writer lets pass unsigned: appended or
    // rewritten by someone without the key (here: the closing checkpoint cut off).
    let (dir, config) = approving("checkpoint_every = 1000");
    decide(&config, 1, 0).await;
    decide(&config, 3, 1).await;
    let log = dir.path().join("decisions.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.last().unwrap().contains("\"event\":\"checkpoint\""), "a clean stop signs the head");
    std::fs::write(&log, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    let (code, said) = run(&log, &["--checkpoint-every", "2"]);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("3 records after the last checkpoint") && said.contains("more than checkpoint_every (2)"),
        "{said}"
    );
    let (code, said) = run(&log, &[]);
    assert_eq!(code, Some(0), "within the default 1000: {said}");
}

/// A stdout decision log (Kubernetes: the cluster's log pipeline keeps it) is chained and signed
/// too: one chain per start of the process, each beginning with `log_start` and a checkpoint.
/// Concatenated across two starts it verifies with the handler's key; an edit, a deletion inside a
/// chain and an unsigned chain slipped in are all found.
#[tokio::test(flavor = "multi_thread")]
async fn a_stdout_log_is_chained_per_start_and_verifies_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = Spec::both(r#"decision := {"action": "APPROVE"}"#)
        .decision_log("sink = \"stdout\"\ncheckpoint_every = 3")
        .write(dir.path());
    let captured = dir.path().join("stdout.jsonl");
    for start in 0..2 {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&captured).unwrap();
        let mut command = Command::new(BIN);
        command.args(["--log-format", "json", "serve", "--config"]).arg(&config).stdout(out);
        let (server, port, _) = crate::common::start_command(command);
        for i in 0..4 {
            let mut tx = payload("eth_transfer.json");
            tx["requestId"] = format!("stdout-{start}-{i}").into();
            post_signed(port, &tx).await;
        }
        server.signal("-TERM");
        let mut server = server;
        assert_eq!(server.wait(), Some(0));
    }
    let key = dir.path().join("handler_public.pem");
    crate::common::write(&key, &crate::common::keys().handler.public_pem);
    let verify_with_key = |file: &Path| {
        let out = Command::new(BIN).args(["log", "verify", "--key"]).arg(&key).arg(file).output().unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (code, out) = verify_with_key(&captured);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("in 2 chains"), "{out}");

    let text = std::fs::read_to_string(&captured).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let tampered = |name: &str, lines: Vec<String>| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        verify_with_key(&path)
    };
    let decision = lines.iter().position(|l| l.contains("stdout-1-2")).unwrap();
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[decision] = edited[decision].replace("APPROVE", "REJECT");
    assert_eq!(tampered("edited.jsonl", edited).0, Some(2));
    let mut deleted: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    deleted.remove(decision);
    assert_eq!(tampered("deleted.jsonl", deleted).0, Some(2));
    // A chain made without the key: a log_start and a record, sealed, no checkpoint.
    let (start, hash) =
        cosigner_guard::audit::chain::seal(cosigner_guard::audit::chain::GENESIS, b"{\"event\":\"log_start\"}");
    let (forged, _) = cosigner_guard::audit::chain::seal(&hash, b"{\"action\":\"APPROVE\",\"requestId\":\"forged\"}");
    let mut slipped: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    slipped.push(String::from_utf8(start).unwrap().trim_end().to_string());
    slipped.push(String::from_utf8(forged).unwrap().trim_end().to_string());
    let (code, out) = tampered("slipped.jsonl", slipped);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("not signed"), "{out}");
}
