//! The approval console's relying party: approvers enrolled by one-time invitation with
//! passkeys, short sessions opened by a passkey, and verdicts proven by a passkey assertion whose
//! challenge is the digest of the verdict itself (see `verdict`). Approvers, invitations,
//! ceremonies and sessions are documents in the state store, so replicas share them. WebAuthn
//! itself — CBOR, COSE keys, signatures, flags, counters — is webauthn-rs.

mod verdict;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{
    CreationChallengeResponse, DiscoverableAuthentication, Passkey, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid, Webauthn, WebauthnBuilder,
};
use webauthn_rs_proto::{AuthenticatorSelectionCriteria, ResidentKeyRequirement, UserVerificationPolicy};

use crate::holds::{timestamp, valid_approver_name};
use crate::state::{StateError, StateStore};

pub use verdict::*;

const APPROVER: &str = "console.approver";
const INVITE: &str = "console.invite";
const CEREMONY: &str = "console.ceremony";
const SESSION: &str = "console.session";
/// How long a registration or sign-in may take between its two steps.
const CEREMONY_TTL: Duration = Duration::from_secs(300);
/// The longest invitation the admin API hands out.
pub const MAX_INVITE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The relying party: who the passkeys are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSettings {
    pub rp_id: String,
    pub origin: Url,
    pub session_ttl: Duration,
}

/// A person who approves with passkeys: one name (the approvers' one name space), any number of
/// credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasskeyApprover {
    pub name: String,
    pub user_id: Uuid,
    pub credentials: Vec<Enrolled>,
}

/// One enrolled passkey (its public key and signature counter inside `passkey`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Enrolled {
    /// The credential id, base64url.
    pub id: String,
    pub enrolled_at: String,
    #[serde(default)]
    pub last_used: Option<String>,
    pub passkey: Passkey,
}

impl Enrolled {
    /// What the admin API and the log show of it: never the key itself, its algorithm.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "enrolled_at": self.enrolled_at,
            "last_used": self.last_used,
            "algorithm": format!("{:?}", self.passkey.cred_algorithm()),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Invite {
    name: String,
    expires_at: String,
}

#[derive(Serialize, Deserialize)]
enum Ceremony {
    Register { name: String, invite: String, user_id: Uuid, state: PasskeyRegistration },
    SignIn { state: DiscoverableAuthentication },
}

#[derive(Serialize, Deserialize)]
struct Session {
    approver: String,
    expires_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("this invitation is unknown, already used or expired")]
    BadInvite,
    #[error("the ceremony is unknown or expired: start again")]
    NoCeremony,
    #[error("the passkey was not accepted: {0}")]
    Passkey(String),
    #[error("this passkey is not enrolled here (or its approver was revoked)")]
    UnknownCredential,
    #[error("this passkey is already enrolled")]
    AlreadyEnrolled,
    #[error("the approver name must be 1–64 letters, digits or . _ - @")]
    BadName,
    #[error(transparent)]
    State(#[from] StateError),
}

/// A new passkey, as the decision log records it (`approver_enrolled`).
#[derive(Debug, Serialize)]
pub struct Enrolment {
    pub approver: String,
    pub credential: String,
    pub passkey: Passkey,
    pub rp_id: String,
    pub origin: String,
}

pub struct Console {
    webauthn: Webauthn,
    store: Arc<StateStore>,
    settings: ConsoleSettings,
}

impl Console {
    pub fn new(settings: ConsoleSettings, store: Arc<StateStore>) -> Result<Self, String> {
        let webauthn = relying_party(&settings.rp_id, &settings.origin)?;
        Ok(Self { webauthn, store, settings })
    }

    pub fn settings(&self) -> &ConsoleSettings {
        &self.settings
    }

    /// A one-time invitation for `name`: the token to put in the link, and when it expires.
    pub async fn invite(
        &self,
        name: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<(String, String), ConsoleError> {
        if !valid_approver_name(name) {
            return Err(ConsoleError::BadName);
        }
        let token = random_token();
        let expires = now + chrono::Duration::from_std(ttl.min(MAX_INVITE_TTL)).unwrap_or_default();
        let invite = Invite { name: name.to_string(), expires_at: timestamp(expires) };
        self.store.put_document(INVITE, &token_id(&token), Some(&invite), 0, micros(expires)).await?;
        Ok((token, invite.expires_at))
    }

    /// The name an invitation is for, if it is still good.
    pub async fn invited(&self, token: &str) -> Result<String, ConsoleError> {
        let (_, invite) = self.store.document::<Invite>(INVITE, &token_id(token)).await?;
        invite.map(|invite| invite.name).ok_or(ConsoleError::BadInvite)
    }

    /// Starts enrolling a passkey with an invitation: the options for `navigator.credentials.create`
    /// (a discoverable credential, user verification required) and the ceremony's id.
    pub async fn register_start(&self, token: &str) -> Result<(String, CreationChallengeResponse), ConsoleError> {
        let name = self.invited(token).await?;
        let (_, approver) = self.store.document::<PasskeyApprover>(APPROVER, &name).await?;
        let user_id = approver.as_ref().map_or_else(|| Uuid::from_bytes(random_bytes()), |a| a.user_id);
        let exclude = approver.map(|a| a.credentials.iter().map(|c| c.passkey.cred_id().clone()).collect());
        let (mut options, state) = self
            .webauthn
            .start_passkey_registration(user_id, &name, &name, exclude)
            .map_err(|e| ConsoleError::Passkey(e.to_string()))?;
        // Approvers sign in without typing a name: the passkey must be discoverable.
        options.public_key.authenticator_selection = Some(AuthenticatorSelectionCriteria {
            authenticator_attachment: None,
            resident_key: Some(ResidentKeyRequirement::Required),
            require_resident_key: true,
            user_verification: UserVerificationPolicy::Required,
        });
        let ceremony = Ceremony::Register { name, invite: token_id(token), user_id, state };
        Ok((self.begin(&ceremony).await?, options))
    }

    /// Finishes enrolling: verifies the new credential, uses up the invitation, and adds the
    /// passkey to its approver.
    pub async fn register_finish(
        &self,
        ceremony: &str,
        credential: &RegisterPublicKeyCredential,
        now: DateTime<Utc>,
    ) -> Result<Enrolment, ConsoleError> {
        let Ceremony::Register { name, invite, user_id, state } = self.finish(ceremony).await? else {
            return Err(ConsoleError::NoCeremony);
        };
        let passkey = self
            .webauthn
            .finish_passkey_registration(credential, &state)
            .map_err(|e| ConsoleError::Passkey(e.to_string()))?;
        let id = B64URL.encode::<&[u8]>(passkey.cred_id().as_ref());
        if self.find_credential(&id).await?.is_some() {
            return Err(ConsoleError::AlreadyEnrolled);
        }
        // The invitation works once: whoever deletes it first enrols.
        let (revision, invitation) = self.store.document::<Invite>(INVITE, &invite).await?;
        if invitation.is_none_or(|i| i.name != name)
            || !self.store.put_document(INVITE, &invite, None::<&Invite>, revision, 0).await?
        {
            return Err(ConsoleError::BadInvite);
        }
        let enrolled =
            Enrolled { id: id.clone(), enrolled_at: timestamp(now), last_used: None, passkey: passkey.clone() };
        loop {
            let (revision, approver) = self.store.document::<PasskeyApprover>(APPROVER, &name).await?;
            let mut approver =
                approver.unwrap_or_else(|| PasskeyApprover { name: name.clone(), user_id, credentials: Vec::new() });
            approver.credentials.push(enrolled.clone());
            if self.store.put_document(APPROVER, &name, Some(&approver), revision, 0).await? {
                break;
            }
        }
        Ok(Enrolment {
            approver: name,
            credential: id,
            passkey,
            rp_id: self.settings.rp_id.clone(),
            origin: self.settings.origin.to_string(),
        })
    }

    /// Starts a sign-in with any enrolled passkey (the authenticator offers its own).
    pub async fn sign_in_start(&self) -> Result<(String, RequestChallengeResponse), ConsoleError> {
        let (mut options, state) =
            self.webauthn.start_discoverable_authentication().map_err(|e| ConsoleError::Passkey(e.to_string()))?;
        // A button starts it, not an autofill field.
        options.mediation = None;
        Ok((self.begin(&Ceremony::SignIn { state }).await?, options))
    }

    /// Finishes a sign-in: the session's token, its approver and when it ends.
    pub async fn sign_in_finish(
        &self,
        ceremony: &str,
        credential: &PublicKeyCredential,
        now: DateTime<Utc>,
    ) -> Result<(String, String, DateTime<Utc>), ConsoleError> {
        let Ceremony::SignIn { state } = self.finish(ceremony).await? else { return Err(ConsoleError::NoCeremony) };
        let id = B64URL.encode(credential.get_credential_id());
        let (approver, enrolled) = self.find_credential(&id).await?.ok_or(ConsoleError::UnknownCredential)?;
        let result = self
            .webauthn
            .finish_discoverable_authentication_v2(credential, state, &enrolled.passkey)
            .map_err(|e| ConsoleError::Passkey(e.to_string()))?;
        self.used(&approver, &id, &result, now).await?;
        let token = random_token();
        let expires = now + chrono::Duration::from_std(self.settings.session_ttl).unwrap_or_default();
        let session = Session { approver: approver.clone(), expires_at: timestamp(expires) };
        self.store.put_document(SESSION, &token_id(&token), Some(&session), 0, micros(expires)).await?;
        Ok((token, approver, expires))
    }

    /// The approver a session token belongs to, while it lasts and the approver is enrolled.
    pub async fn session(&self, token: &str) -> Result<Option<String>, ConsoleError> {
        let (_, session) = self.store.document::<Session>(SESSION, &token_id(token)).await?;
        let Some(session) = session else { return Ok(None) };
        let (_, approver) = self.store.document::<PasskeyApprover>(APPROVER, &session.approver).await?;
        Ok(approver.filter(|a| !a.credentials.is_empty()).map(|a| a.name))
    }

    pub async fn sign_out(&self, token: &str) -> Result<(), ConsoleError> {
        let id = token_id(token);
        let (revision, session) = self.store.document::<Session>(SESSION, &id).await?;
        if session.is_some() {
            self.store.put_document(SESSION, &id, None::<&Session>, revision, 0).await?;
        }
        Ok(())
    }

    pub async fn approvers(&self) -> Result<Vec<PasskeyApprover>, ConsoleError> {
        let mut approvers: Vec<PasskeyApprover> = self.store.documents(APPROVER).await?;
        approvers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(approvers)
    }

    /// Removes a passkey approver and every credential; their sessions end with them. False if
    /// there was none.
    pub async fn revoke(&self, name: &str) -> Result<bool, ConsoleError> {
        loop {
            let (revision, approver) = self.store.document::<PasskeyApprover>(APPROVER, name).await?;
            if approver.is_none() {
                return Ok(false);
            }
            if self.store.put_document(APPROVER, name, None::<&PasskeyApprover>, revision, 0).await? {
                return Ok(true);
            }
        }
    }

    async fn approver(&self, name: &str) -> Result<Option<PasskeyApprover>, ConsoleError> {
        Ok(self.store.document::<PasskeyApprover>(APPROVER, name).await?.1)
    }

    async fn find_credential(&self, id: &str) -> Result<Option<(String, Enrolled)>, ConsoleError> {
        let approvers: Vec<PasskeyApprover> = self.store.documents(APPROVER).await?;
        Ok(approvers
            .into_iter()
            .find_map(|a| a.credentials.iter().find(|c| c.id == id).cloned().map(|c| (a.name.clone(), c))))
    }

    /// Keeps the authenticator's new signature counter (compare-and-set), so an assertion seen
    /// once is refused by webauthn-rs the next time (a counter that does not grow).
    async fn used(
        &self,
        name: &str,
        id: &str,
        result: &webauthn_rs::prelude::AuthenticationResult,
        now: DateTime<Utc>,
    ) -> Result<(), ConsoleError> {
        loop {
            let (revision, approver) = self.store.document::<PasskeyApprover>(APPROVER, name).await?;
            let mut approver = approver.ok_or(ConsoleError::UnknownCredential)?;
            let enrolled =
                approver.credentials.iter_mut().find(|c| c.id == id).ok_or(ConsoleError::UnknownCredential)?;
            if result.counter() > 0 && result.counter() <= stored_counter(enrolled) {
                // A concurrent use got there first with this or a later counter: a replay.
                return Err(ConsoleError::Passkey("the authenticator's counter did not grow: a replay".into()));
            }
            enrolled.passkey.update_credential(result);
            enrolled.last_used = Some(timestamp(now));
            if self.store.put_document(APPROVER, name, Some(&approver), revision, 0).await? {
                return Ok(());
            }
        }
    }

    async fn begin(&self, ceremony: &Ceremony) -> Result<String, ConsoleError> {
        let id = random_token();
        let expires = Utc::now() + chrono::Duration::from_std(CEREMONY_TTL).unwrap_or_default();
        self.store.put_document(CEREMONY, &id, Some(ceremony), 0, micros(expires)).await?;
        Ok(id)
    }

    /// Takes a ceremony's state out of the store: each is finished at most once.
    async fn finish(&self, id: &str) -> Result<Ceremony, ConsoleError> {
        let (revision, ceremony) = self.store.document::<Ceremony>(CEREMONY, id).await?;
        let ceremony = ceremony.ok_or(ConsoleError::NoCeremony)?;
        if !self.store.put_document(CEREMONY, id, None::<&Ceremony>, revision, 0).await? {
            return Err(ConsoleError::NoCeremony);
        }
        Ok(ceremony)
    }
}

/// The signature counter webauthn-rs keeps inside a passkey, read through its serialised form
/// (the crate exposes it only there).
fn stored_counter(enrolled: &Enrolled) -> u32 {
    serde_json::to_value(&enrolled.passkey).ok().and_then(|v| v["cred"]["counter"].as_u64()).map_or(0, |c| c as u32)
}

/// The relying party for `rp_id` at `origin`.
pub fn relying_party(rp_id: &str, origin: &Url) -> Result<Webauthn, String> {
    WebauthnBuilder::new(rp_id, origin)
        .and_then(|b| b.rp_name("cosigner-guard").build())
        .map_err(|e| format!("console: rp_id {rp_id:?} is not the origin {origin}'s domain or a parent of it ({e})"))
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // Only a broken system RNG fails; a zero token is then refused as unknown, never guessed.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes
}

fn random_token() -> String {
    B64URL.encode(random_bytes::<32>())
}

/// Tokens are stored by their digest: a copy of the store does not open sessions.
fn token_id(token: &str) -> String {
    crate::keys::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref())
}

fn micros(at: DateTime<Utc>) -> u64 {
    at.timestamp_micros().max(0) as u64
}

#[cfg(test)]
mod tests;
