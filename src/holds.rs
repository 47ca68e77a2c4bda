//! Holds: a transfer the policy holds for people (`{"action": "RETRY", "hold": {"approvals": 2}}`)
//! is answered RETRY until approvers sign it off, M of N, with their own keys — an independent
//! second factor outside Fireblocks.
//!
//! A hold is created once per transaction (its `txId`; `requestId` for configuration changes),
//! bound to the request's identity digest (what it moves), and lives in the state store, so it
//! survives restarts and is shared by replicas. A verdict is a message signed by an approver's
//! Ed25519 or P-256 key that binds the hold id, the digest, the verdict and a time: the server
//! counts it only if it verifies against a configured approver key, once per approver, and only
//! while the hold is pending. One rejection rejects.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, ED25519, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
    ParsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, Utc};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::decision::{Action, Decision};
use crate::request::RequestKind;
use crate::state::{StateError, StateStore};

/// How far an approver's clock may be from the server's.
const CLOCK_SKEW: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Approval {
    pub approver: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rejection {
    pub approver: String,
    pub at: String,
    pub reason: String,
}

/// A hold as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hold {
    pub id: String,
    /// Hex SHA-256 of the request's identity (what it moves).
    pub digest: String,
    pub required: u32,
    pub reason: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    /// `approved` or `rejected` once decided; expiry is computed from `expires_at`.
    pub decided: Option<Status>,
    pub approvals: Vec<Approval>,
    pub rejections: Vec<Rejection>,
    /// What it is about, for the people asked (kind, asset, amount, source, destination).
    pub summary: Value,
}

impl Hold {
    pub fn status(&self, now: DateTime<Utc>) -> Status {
        match self.decided {
            Some(decided) => decided,
            None if parse_time(&self.expires_at).is_some_and(|expiry| now >= expiry) => Status::Expired,
            None => Status::Pending,
        }
    }

    /// What policies see as `input.context.hold`, and what the admin API shows.
    pub fn view(&self, now: DateTime<Utc>) -> Value {
        json!({
            "id": self.id,
            "status": self.status(now),
            "required": self.required,
            "approvals": self.approvals,
            "rejections": self.rejections,
            "reason": self.reason,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "digest": self.digest,
            "summary": self.summary,
        })
    }
}

/// `input.context.hold` as a policy saw it, read back into a hold (replay, shadow evaluation).
pub fn from_view(view: &Value) -> Option<Hold> {
    #[derive(Deserialize)]
    struct View {
        id: String,
        status: Status,
        required: u32,
        approvals: Vec<Approval>,
        rejections: Vec<Rejection>,
        reason: Option<String>,
        created_at: String,
        expires_at: String,
        digest: String,
        summary: Value,
    }
    let view = View::deserialize(view).ok()?;
    Some(Hold {
        id: view.id,
        digest: view.digest,
        required: view.required,
        reason: view.reason,
        created_at: view.created_at,
        expires_at: view.expires_at,
        decided: matches!(view.status, Status::Approved | Status::Rejected).then_some(view.status),
        approvals: view.approvals,
        rejections: view.rejections,
        summary: view.summary,
    })
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Approve,
    Reject,
}

/// A signed verdict as it travels to the admin API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedVerdict {
    pub hold: String,
    pub digest: String,
    pub verdict: Verdict,
    pub at: String,
    #[serde(default)]
    pub reason: String,
    /// Base64 of the signature over [`SignedVerdict::message`].
    pub signature: String,
}

impl SignedVerdict {
    /// The exact bytes an approver signs: every field but the signature, one per line.
    pub fn message(hold: &str, digest: &str, verdict: Verdict, at: &str, reason: &str) -> Vec<u8> {
        let verdict = match verdict {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
        };
        format!("cosigner-guard hold verdict v1\nhold: {hold}\ndigest: {digest}\nverdict: {verdict}\nat: {at}\nreason: {reason}\n")
            .into_bytes()
    }

    /// Signs a verdict on `hold` with an approver's private key.
    pub fn sign(hold: &Hold, verdict: Verdict, reason: &str, key: &ApproverSigningKey, now: DateTime<Utc>) -> Self {
        let at = timestamp(now);
        let message = Self::message(&hold.id, &hold.digest, verdict, &at, reason);
        SignedVerdict {
            hold: hold.id.clone(),
            digest: hold.digest.clone(),
            verdict,
            at,
            reason: reason.to_string(),
            signature: BASE64.encode(key.sign(&message)),
        }
    }
}

/// Why a verdict was refused: each maps to one HTTP status at the admin API.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("no hold {0}")]
    NoSuchHold(String),
    #[error("this verdict was made for another hold or request (hold {hold}, digest {digest})")]
    AnotherHold { hold: String, digest: String },
    #[error("the signature does not verify with any approver's key")]
    NotAnApprover,
    #[error("the verdict's time {0} is more than 10 minutes from the server's clock")]
    Stale(String),
    #[error("the hold is {0:?}, no longer pending")]
    NotPending(Status),
    #[error("{0} has already given a verdict on this hold")]
    AlreadyCounted(String),
    #[error("a rejection needs a reason")]
    NoReason,
    #[error(transparent)]
    State(#[from] StateError),
}

/// An approver's public key (Ed25519 or ECDSA P-256, PEM SubjectPublicKeyInfo), parsed once.
pub struct ApproverKey {
    pub name: String,
    pub fingerprint: String,
    key: ParsedPublicKey,
}

impl std::fmt::Debug for ApproverKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApproverKey").field("name", &self.name).field("fingerprint", &self.fingerprint).finish()
    }
}

impl ApproverKey {
    pub fn from_pem(name: &str, pem: &[u8]) -> Result<Self, String> {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|e| format!("not a PEM public key (\"BEGIN PUBLIC KEY\"): {e}"))?;
        let key = ParsedPublicKey::new(&ED25519, spki.as_ref())
            .or_else(|_| ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, spki.as_ref()))
            .map_err(|_| "not an Ed25519 or ECDSA P-256 public key".to_string())?;
        Ok(Self { name: name.to_string(), fingerprint: crate::keys::fingerprint(spki.as_ref()), key })
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

/// An approver's private key (PKCS#8 PEM), for the CLI.
pub enum ApproverSigningKey {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

impl ApproverSigningKey {
    pub fn from_pem_file(path: &Path) -> Result<Self, String> {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(&pem)
            .map_err(|e| format!("{}: not a PEM private key (\"BEGIN PRIVATE KEY\"): {e}", path.display()))?;
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8(der.secret_pkcs8_der()) {
            return Ok(Self::Ed25519(pair));
        }
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der.secret_pkcs8_der())
            .map(Self::P256)
            .map_err(|_| format!("{}: not an Ed25519 or ECDSA P-256 private key", path.display()))
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
            // Signing only fails on a broken RNG; an empty signature then fails verification.
            Self::P256(pair) => pair
                .sign(&aws_lc_rs::rand::SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .unwrap_or_default(),
        }
    }
}

/// A new Ed25519 approver key pair (PKCS#8 and SubjectPublicKeyInfo PEM).
pub fn generate_approver_key() -> Result<crate::keys::GeneratedKeyPair, String> {
    let pair = Ed25519KeyPair::generate().map_err(|_| "Ed25519 key generation failed".to_string())?;
    // PKCS#8 v1: OpenSSL 3 and Python `cryptography` refuse the v2 form (with the public key).
    let private = pair.to_pkcs8v1().map_err(|_| "cannot encode the private key".to_string())?;
    let public = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(pair.public_key())
        .map_err(|_| "cannot encode the public key".to_string())?;
    Ok(crate::keys::GeneratedKeyPair::from_der(private.as_ref(), public.as_ref()))
}

#[derive(Debug, Clone)]
pub struct HoldSettings {
    /// How long a hold waits for its verdicts (the Co-signer retries for about an hour).
    pub ttl: Duration,
    pub approvers: Vec<Arc<ApproverKey>>,
}

impl Default for HoldSettings {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(55 * 60), approvers: Vec::new() }
    }
}

/// What a decision saw of its transaction's hold, for the decision log: with the approvers'
/// names, the record of the decision that released a hold says who released it.
#[derive(Debug, Clone, Serialize)]
pub struct HoldTrace {
    pub id: String,
    pub status: Status,
    pub required: u32,
    pub approvals: Vec<String>,
    /// This decision created the hold.
    pub created: bool,
}

impl HoldTrace {
    pub fn of(hold: &Hold, now: DateTime<Utc>, created: bool) -> Self {
        Self {
            id: hold.id.clone(),
            status: hold.status(now),
            required: hold.required,
            approvals: hold.approvals.iter().map(|a| a.approver.clone()).collect(),
            created,
        }
    }
}

/// What the people asked see of a request: the identity document whose digest they sign — for a
/// transaction its canonical view: what moves, from where, to which addresses — and a headline
/// drawn from that same document, so what is shown is what is signed.
pub fn summary(kind: RequestKind, identity: Value, payload: &serde_json::Map<String, Value>) -> Value {
    let mut summary = match kind {
        RequestKind::Transaction => {
            let text = |v: &Value| v.as_str().map(str::to_owned);
            let endpoint = |kind: &Value, id: &Value| match (text(kind), text(id)) {
                (Some(kind), Some(id)) if !id.is_empty() => Some(format!("{kind} {id}")),
                (kind, _) => kind,
            };
            let destinations: Vec<Value> = identity["destinations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    json!(text(&d["address"]).filter(|a| !a.is_empty()).or_else(|| endpoint(&d["type"], &d["id"])))
                })
                .collect();
            json!({
                "kind": kind,
                "operation": identity["operation"],
                "asset": identity["asset"],
                "amount": identity["amount"],
                "source": endpoint(&identity["source"]["type"], &identity["source"]["id"]),
                "destination": if destinations.len() == 1 { destinations[0].clone() } else { Value::Array(destinations) },
                "note": payload.get("note").cloned().unwrap_or(Value::Null),
            })
        }
        RequestKind::ConfigChange => {
            json!({"kind": kind, "type": identity["type"], "extra_info": identity["extraInfo"]})
        }
    };
    summary["identity"] = identity;
    summary
}

/// Keeps a hold's promise whatever the policy answers: nothing held is approved before its
/// approvers release it, and a request that moves something else than what was held is refused.
///
/// `conflicts` are the request's own contradictions (`context.transfer.conflicts`): approvers
/// approved one canonical transaction, so a request that contradicts itself is not it, whatever a
/// policy that ignores conflicts says.
pub fn gate(
    hold: Option<&Hold>,
    digest: &str,
    conflicts: &[String],
    decision: Decision,
    now: DateTime<Utc>,
) -> Decision {
    let Some(hold) = hold else { return decision };
    let overridden = |action, reason: String| Decision {
        action,
        reason: Some(reason),
        source: crate::decision::Source::Hold,
        records: Vec::new(),
        hold: None,
    };
    if hold.digest != digest {
        if decision.action == Action::Reject {
            return decision;
        }
        return overridden(
            Action::Reject,
            format!("cosigner-guard: transaction {} was held for approval with different content", hold.id),
        );
    }
    if decision.action != Action::Approve {
        return decision;
    }
    if !conflicts.is_empty() {
        return overridden(
            Action::Reject,
            format!(
                "cosigner-guard: transaction {} was held for approval, and this request contradicts itself: {}",
                hold.id,
                conflicts.join("; ")
            ),
        );
    }
    match hold.status(now) {
        Status::Approved => decision,
        Status::Pending => overridden(
            Action::Retry,
            format!(
                "held for approval: {} of {} approvals{}",
                hold.approvals.len(),
                hold.required,
                hold.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
            ),
        ),
        Status::Rejected => {
            let by = hold.rejections.first().map(|r| format!(" by {}: {}", r.approver, r.reason)).unwrap_or_default();
            overridden(Action::Reject, format!("hold rejected{by}"))
        }
        Status::Expired => overridden(Action::Reject, format!("hold expired at {} without approval", hold.expires_at)),
    }
}

/// Writes `hold` to the store if its stored revision is still `revision` (0: a new hold).
pub async fn keep(store: &StateStore, hold: &Hold, revision: u64) -> Result<bool, StateError> {
    let created_us = parse_time(&hold.created_at).map_or(0, |t| t.timestamp_micros().max(0) as u64);
    store.put_hold(&hold.id, created_us, hold, revision).await
}

/// The holds kept in a state store.
pub struct Holds {
    store: Arc<StateStore>,
    settings: HoldSettings,
}

impl Holds {
    pub fn new(store: Arc<StateStore>, settings: HoldSettings) -> Self {
        Self { store, settings }
    }

    pub fn settings(&self) -> &HoldSettings {
        &self.settings
    }

    pub async fn get(&self, id: &str) -> Result<Option<Hold>, StateError> {
        Ok(self.store.hold(id).await?.map(|(_, hold)| hold))
    }

    pub async fn list(&self) -> Result<Vec<Hold>, StateError> {
        self.store.holds().await
    }

    /// Creates the hold for transaction `id` unless it exists; returns the hold and whether it is new.
    pub async fn create(
        &self,
        id: &str,
        digest: &str,
        required: u32,
        reason: Option<String>,
        summary: Value,
        now: DateTime<Utc>,
    ) -> Result<(Hold, bool), StateError> {
        let expires = now + chrono::Duration::from_std(self.settings.ttl).unwrap_or(chrono::Duration::zero());
        let hold = Hold {
            id: id.to_string(),
            digest: digest.to_string(),
            required,
            reason,
            created_at: timestamp(now),
            expires_at: timestamp(expires),
            decided: None,
            approvals: Vec::new(),
            rejections: Vec::new(),
            summary,
        };
        loop {
            if let Some((_, existing)) = self.store.hold(id).await? {
                return Ok((existing, false));
            }
            if keep(&self.store, &hold, 0).await? {
                return Ok((hold, true));
            }
        }
    }

    /// Counts a signed verdict: verified against the approver keys, bound to this hold and
    /// request, once per approver, only while pending. Returns the hold after it and who signed.
    pub async fn verdict(
        &self,
        id: &str,
        signed: &SignedVerdict,
        now: DateTime<Utc>,
    ) -> Result<(Hold, String), Refused> {
        loop {
            let (revision, mut hold): (u64, Hold) =
                self.store.hold(id).await?.ok_or_else(|| Refused::NoSuchHold(id.to_string()))?;
            if signed.hold != hold.id || signed.digest != hold.digest {
                return Err(Refused::AnotherHold { hold: signed.hold.clone(), digest: signed.digest.clone() });
            }
            let message = SignedVerdict::message(&hold.id, &hold.digest, signed.verdict, &signed.at, &signed.reason);
            let signature = BASE64.decode(&signed.signature).map_err(|_| Refused::NotAnApprover)?;
            let approver = self
                .settings
                .approvers
                .iter()
                .find(|key| key.verifies(&message, &signature))
                .ok_or(Refused::NotAnApprover)?
                .name
                .clone();
            let at = parse_time(&signed.at).ok_or_else(|| Refused::Stale(signed.at.clone()))?;
            if (at - now).abs() > chrono::Duration::from_std(CLOCK_SKEW).unwrap_or(chrono::Duration::zero()) {
                return Err(Refused::Stale(signed.at.clone()));
            }
            match hold.status(now) {
                Status::Pending => {}
                other => return Err(Refused::NotPending(other)),
            }
            let counted = hold.approvals.iter().map(|a| &a.approver).chain(hold.rejections.iter().map(|r| &r.approver));
            if counted.into_iter().any(|name| *name == approver) {
                return Err(Refused::AlreadyCounted(approver));
            }
            match signed.verdict {
                Verdict::Approve => {
                    hold.approvals.push(Approval { approver: approver.clone(), at: timestamp(now) });
                    if hold.approvals.len() >= hold.required as usize {
                        hold.decided = Some(Status::Approved);
                    }
                }
                Verdict::Reject if signed.reason.trim().is_empty() => return Err(Refused::NoReason),
                Verdict::Reject => {
                    let reason = signed.reason.clone();
                    hold.rejections.push(Rejection { approver: approver.clone(), at: timestamp(now), reason });
                    hold.decided = Some(Status::Rejected);
                }
            }
            // Compare-and-set: a concurrent verdict makes this one start again from the new state.
            if keep(&self.store, &hold, revision).await? {
                return Ok((hold, approver));
            }
        }
    }
}

/// An approver's name, as configured and logged: letters, digits and `. _ - @`.
pub fn valid_approver_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let message =
            |hold: &str, digest: &str, verdict, at: &str| SignedVerdict::message(hold, digest, verdict, at, "");
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
}
