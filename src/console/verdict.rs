//! A verdict proven by a passkey. The challenge the authenticator signs is SHA-256 of the very
//! message a key-holding approver signs (`SignedVerdict::message`: hold, request digest, verdict,
//! time, reason), so the assertion is bound to the verdict, not to a session or a server nonce,
//! and anyone holding the decision log can check it again offline.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use webauthn_rs::prelude::{
    AuthenticationResult, Passkey, PasskeyAuthentication, PublicKeyCredential, RequestChallengeResponse, Url, Webauthn,
};

use super::{Console, ConsoleError, relying_party};
use crate::holds::{Verdict, VerdictStatement};

/// The WebAuthn challenge of a verdict: SHA-256 of the bytes a key-signed verdict signs.
pub fn challenge(statement: &VerdictStatement) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &statement.message()).as_ref().to_vec()
}

/// What the decision log keeps of a passkey verdict, enough to verify it again offline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasskeyProof {
    /// The credential id, base64url.
    pub credential: String,
    /// The credential's public key (and its counter before this assertion), as enrolled.
    pub passkey: Passkey,
    pub rp_id: String,
    pub origin: String,
    /// The assertion as the browser returned it (authenticatorData, clientDataJSON, signature).
    pub assertion: PublicKeyCredential,
}

impl Console {
    /// The options for `navigator.credentials.get` that sign `statement` with one of the
    /// approver's passkeys.
    pub async fn verdict_options(
        &self,
        approver: &str,
        statement: &VerdictStatement,
    ) -> Result<RequestChallengeResponse, ConsoleError> {
        let passkeys = self.passkeys(approver).await?;
        let (mut options, _) = bound_to(&self.webauthn, &passkeys, statement)?;
        options.public_key.challenge = challenge(statement);
        Ok(options)
    }

    /// Verifies that one of `approver`'s passkeys signed `statement` with user verification, and
    /// keeps its new counter (a replayed assertion is refused). Nothing is counted here: the
    /// caller counts the verdict exactly as a key-signed one.
    pub async fn prove(
        &self,
        approver: &str,
        statement: &VerdictStatement,
        assertion: &PublicKeyCredential,
        now: DateTime<Utc>,
    ) -> Result<PasskeyProof, ConsoleError> {
        let passkeys = self.passkeys(approver).await?;
        let id = B64URL.encode(assertion.get_credential_id());
        let passkey = passkeys
            .iter()
            .find(|p| B64URL.encode::<&[u8]>(p.cred_id().as_ref()) == id)
            .cloned()
            .ok_or(ConsoleError::UnknownCredential)?;
        let result = check(&self.webauthn, &passkey, statement, assertion)?;
        self.used(approver, &id, &result, now).await?;
        Ok(PasskeyProof {
            credential: id,
            passkey,
            rp_id: self.settings.rp_id.clone(),
            origin: self.settings.origin.to_string(),
            assertion: assertion.clone(),
        })
    }

    async fn passkeys(&self, approver: &str) -> Result<Vec<Passkey>, ConsoleError> {
        let approver = self.approver(approver).await?.ok_or(ConsoleError::UnknownCredential)?;
        Ok(approver.credentials.into_iter().map(|c| c.passkey).collect())
    }
}

/// Checks a logged passkey verdict again, offline: the `hold_verdict` record's statement, the
/// credential's public key and the assertion, with the relying party it was made for.
pub fn reverify(record: &Value) -> Result<(), String> {
    let proof: PasskeyProof =
        serde_json::from_value(record["passkey"].clone()).map_err(|e| format!("no passkey proof: {e}"))?;
    let text = |name: &str| record[name].as_str().unwrap_or_default().to_string();
    let verdict: Verdict = serde_json::from_value(record["verdict"].clone()).map_err(|e| format!("no verdict: {e}"))?;
    let statement = VerdictStatement {
        hold: text("hold"),
        digest: text("digest"),
        verdict,
        at: text("signed_at"),
        reason: text("reason"),
    };
    let origin = Url::parse(&proof.origin).map_err(|e| format!("origin {:?}: {e}", proof.origin))?;
    let webauthn = relying_party(&proof.rp_id, &origin)?;
    check(&webauthn, &proof.passkey, &statement, &proof.assertion).map(drop).map_err(|e| e.to_string())
}

/// webauthn-rs verifies the assertion (signature, origin, rp id hash, user verification,
/// counter) against the state it made; the state's challenge is replaced by the statement's.
fn check(
    webauthn: &Webauthn,
    passkey: &Passkey,
    statement: &VerdictStatement,
    assertion: &PublicKeyCredential,
) -> Result<AuthenticationResult, ConsoleError> {
    let (_, state) = bound_to(webauthn, std::slice::from_ref(passkey), statement)?;
    let result =
        webauthn.finish_passkey_authentication(assertion, &state).map_err(|e| ConsoleError::Passkey(e.to_string()))?;
    if !result.user_verified() {
        return Err(ConsoleError::Passkey("the authenticator did not verify the user".into()));
    }
    Ok(result)
}

/// An authentication ceremony over `passkeys` whose challenge is the statement's.
fn bound_to(
    webauthn: &Webauthn,
    passkeys: &[Passkey],
    statement: &VerdictStatement,
) -> Result<(RequestChallengeResponse, PasskeyAuthentication), ConsoleError> {
    let failed = |e: &dyn std::fmt::Display| ConsoleError::Passkey(e.to_string());
    let (options, state) = webauthn.start_passkey_authentication(passkeys).map_err(|e| failed(&e))?;
    // The crate makes a random challenge; its state is plain data (state serialisation), so the
    // challenge is swapped for the verdict's before anything is verified against it.
    let mut state = serde_json::to_value(&state).map_err(|e| failed(&e))?;
    state["ast"]["challenge"] = Value::String(B64URL.encode(challenge(statement)));
    let state = serde_json::from_value(state).map_err(|e| failed(&e))?;
    Ok((options, state))
}
