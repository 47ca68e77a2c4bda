use super::*;
use crate::holds::{Verdict, VerdictStatement};

fn console() -> Console {
    let settings = ConsoleSettings {
        rp_id: "localhost".into(),
        origin: Url::parse("http://localhost:9090").unwrap(),
        session_ttl: Duration::from_secs(900),
    };
    Console::new(settings, Arc::new(StateStore::in_memory().unwrap())).unwrap()
}

#[tokio::test]
async fn an_invitation_is_kept_only_as_its_digest_and_starts_one_registration_for_its_name() {
    let console = console();
    let (token, _) = console.invite("alice", Duration::from_secs(60), Utc::now()).await.unwrap();
    assert_eq!(console.store.document::<Invite>(INVITE, &token).await.unwrap().1.map(|i| i.name), None);
    assert_eq!(console.invited(&token).await.unwrap(), "alice");
    let (ceremony, options) = console.register_start(&token).await.unwrap();
    let selection = options.public_key.authenticator_selection.unwrap();
    assert!(selection.require_resident_key, "a discoverable passkey");
    assert_eq!(selection.user_verification, UserVerificationPolicy::Required);
    assert_eq!(options.public_key.user.name, "alice");
    assert!(matches!(console.finish(&ceremony).await, Ok(Ceremony::Register { .. })));
    assert!(matches!(console.finish(&ceremony).await, Err(ConsoleError::NoCeremony)), "finished once");
}

#[tokio::test]
async fn unknown_expired_and_badly_named_invitations_are_refused() {
    let console = console();
    assert!(matches!(console.register_start("made-up").await, Err(ConsoleError::BadInvite)));
    let (token, _) =
        console.invite("bob", Duration::from_secs(60), Utc::now() - chrono::Duration::hours(1)).await.unwrap();
    assert!(matches!(console.invited(&token).await, Err(ConsoleError::BadInvite)), "expired");
    assert!(matches!(
        console.invite("bob smith", Duration::from_secs(60), Utc::now()).await,
        Err(ConsoleError::BadName)
    ));
    assert!(matches!(console.session("made-up").await, Ok(None)));
}

#[test]
fn a_verdicts_challenge_is_the_digest_of_the_message_a_key_signs_and_binds_every_field() {
    let statement = VerdictStatement {
        hold: "t1".into(),
        digest: "ab".into(),
        verdict: Verdict::Approve,
        at: "2026-12-05T16:00:00.000Z".into(),
        reason: String::new(),
    };
    let expected = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &statement.message());
    assert_eq!(challenge(&statement), expected.as_ref());
    let changed = [
        VerdictStatement { hold: "t2".into(), ..statement.clone() },
        VerdictStatement { digest: "cd".into(), ..statement.clone() },
        VerdictStatement { verdict: Verdict::Reject, ..statement.clone() },
        VerdictStatement { at: "2026-12-05T16:00:00.001Z".into(), ..statement.clone() },
        VerdictStatement { reason: "no".into(), ..statement.clone() },
    ];
    for other in changed {
        assert_ne!(challenge(&other), challenge(&statement), "{other:?}");
    }
}

#[test]
fn the_relying_party_must_be_the_origins_domain() {
    let origin = Url::parse("https://approvals.example.com").unwrap();
    assert!(relying_party("approvals.example.com", &origin).is_ok());
    assert!(relying_party("example.com", &origin).is_ok(), "a parent domain");
    assert!(relying_party("evil.com", &origin).is_err());
}

#[test]
fn a_logged_verdict_without_a_proof_does_not_verify() {
    let record = serde_json::json!({"event": "hold_verdict", "hold": "t1", "verdict": "approve"});
    assert!(reverify(&record).unwrap_err().contains("no passkey proof"));
}
