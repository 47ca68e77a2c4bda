use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::*;
use crate::state::StateStore;

fn hold(required: u32) -> Hold {
    Hold {
        id: "t1".into(),
        digest: "ab".into(),
        required,
        reason: Some("big".into()),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        expires_at: "2026-01-01T01:00:00.000Z".into(),
        decided: None,
        approvals: vec![],
        rejections: vec![],
        summary: json!({}),
        cancelled: None,
        expiry_announced: false,
    }
}

#[test]
fn a_pending_hold_expires_at_its_time() {
    let at = |t: &str| parse_time(t).unwrap();
    assert_eq!(hold(2).status(at("2026-01-01T00:59:59Z")), Status::Pending);
    assert_eq!(hold(2).status(at("2026-01-01T01:00:00Z")), Status::Expired);
    let decided = Hold { decided: Some(Status::Approved), ..hold(2) };
    assert_eq!(decided.status(at("2026-01-02T00:00:00Z")), Status::Approved, "a decided hold stays decided");
}

#[test]
fn a_signature_binds_the_hold_the_digest_the_verdict_and_the_time() {
    let pair = generate_approver_key().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k.pem"), &pair.private_pem).unwrap();
    let signer = ApproverSigningKey::from_pem_file(&dir.path().join("k.pem")).unwrap();
    let key = ApproverKey::from_pem("alice", pair.public_pem.as_bytes()).unwrap();
    let now = parse_time("2026-01-01T00:10:00Z").unwrap();
    let signed = SignedVerdict::sign(&hold(2), Verdict::Approve, "", &signer, now);
    let signature = BASE64.decode(&signed.signature).unwrap();
    let message = |hold: &str, digest: &str, verdict, at: &str| SignedVerdict::message(hold, digest, verdict, at, "");
    assert!(key.verifies(&message("t1", "ab", Verdict::Approve, &signed.at), &signature));
    assert!(!key.verifies(&message("t2", "ab", Verdict::Approve, &signed.at), &signature), "another hold");
    assert!(!key.verifies(&message("t1", "cd", Verdict::Approve, &signed.at), &signature), "another request");
    assert!(!key.verifies(&message("t1", "ab", Verdict::Reject, &signed.at), &signature), "another verdict");
    assert!(!key.verifies(&message("t1", "ab", Verdict::Approve, "2026-01-01T00:11:00.000Z"), &signature));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hold_is_created_once_and_concurrent_verdicts_each_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut approvers = Vec::new();
    let mut signers = Vec::new();
    for name in ["alice", "bob"] {
        let pair = generate_approver_key().unwrap();
        std::fs::write(dir.path().join(name), &pair.private_pem).unwrap();
        signers.push(ApproverSigningKey::from_pem_file(&dir.path().join(name)).unwrap());
        approvers.push(Arc::new(ApproverKey::from_pem(name, pair.public_pem.as_bytes()).unwrap()));
    }
    let store = Arc::new(StateStore::in_memory().unwrap());
    let holds = Holds::new(store, HoldSettings { approvers, ..HoldSettings::default() });
    let now = Utc::now();
    let create = || holds.create("t1", "ab", 2, Some("big".into()), json!({}), now);
    let (first, second) = tokio::join!(create(), create());
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(first.1 != second.1, "exactly one of two concurrent requests creates the hold");
    assert_eq!(first.0, second.0);

    let hold = first.0;
    let [alice, bob] = [0, 1].map(|i| SignedVerdict::sign(&hold, Verdict::Approve, "", &signers[i], now));
    let (a, b) = tokio::join!(holds.verdict("t1", &alice, now), holds.verdict("t1", &bob, now));
    assert_eq!((a.unwrap().1, b.unwrap().1), ("alice".to_string(), "bob".to_string()));
    let released = holds.get("t1").await.unwrap().unwrap();
    assert_eq!(released.status(now), Status::Approved, "neither concurrent approval was lost");
    assert_eq!(released.approvals.len(), 2);
    assert!(matches!(holds.verdict("t1", &alice, now).await, Err(Refused::NotPending(Status::Approved))));
    let late = now + chrono::Duration::minutes(11);
    assert!(matches!(holds.verdict("t1", &alice, late).await, Err(Refused::Stale(_))), "an old signature");
}

#[test]
fn approver_keys_are_ed25519_or_p256() {
    let ed = generate_approver_key().unwrap();
    assert!(ApproverKey::from_pem("a", ed.public_pem.as_bytes()).is_ok());
    let p256 = crate::keys::generate(crate::keys::SigningAlgorithm::Es256).unwrap();
    assert!(ApproverKey::from_pem("b", p256.public_pem.as_bytes()).is_ok());
    let rsa = crate::keys::generate_rsa_2048().unwrap();
    assert!(ApproverKey::from_pem("c", rsa.public_pem.as_bytes()).is_err(), "RSA is not an approver key");
}

/// An expired hold is announced once, whoever asks (two replicas sweeping the same store), and a
/// pending or decided one never.
#[tokio::test(flavor = "multi_thread")]
async fn an_expiry_is_claimed_once() {
    let store = std::sync::Arc::new(StateStore::in_memory().unwrap());
    let (a, b) =
        (Holds::new(store.clone(), HoldSettings::default()), Holds::new(store.clone(), HoldSettings::default()));
    keep(&store, &hold(2), 0).await.unwrap();
    keep(&store, &Hold { id: "t2".into(), decided: Some(Status::Approved), ..hold(2) }, 0).await.unwrap();
    let before = parse_time("2026-01-01T00:30:00Z").unwrap();
    assert!(a.newly_expired(before).await.unwrap().is_empty(), "still pending");
    let after = parse_time("2026-01-01T02:00:00Z").unwrap();
    let (first, second) = tokio::join!(a.newly_expired(after), b.newly_expired(after));
    let claimed: Vec<String> = first.unwrap().into_iter().chain(second.unwrap()).map(|h| h.id).collect();
    assert_eq!(claimed, ["t1"]);
    assert!(a.newly_expired(after).await.unwrap().is_empty(), "announced once");
}
