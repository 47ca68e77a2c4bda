//! The holds kept in the state store: created once per transaction, decided by verdicts.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::state::{StateError, StateStore};

use super::*;

/// How far an approver's clock may be from the server's.
const CLOCK_SKEW: Duration = Duration::from_secs(600);

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
            cancelled: None,
            expiry_announced: false,
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

    /// Cancels transaction `id`'s hold if it is still pending (its transaction ended in Fireblocks);
    /// the hold after it, `None` without a pending hold.
    pub async fn cancel(&self, id: &str, reason: String, now: DateTime<Utc>) -> Result<Option<Hold>, StateError> {
        loop {
            let Some((revision, mut hold)) = self.store.hold::<Hold>(id).await? else { return Ok(None) };
            if hold.status(now) != Status::Pending {
                return Ok(None);
            }
            hold.decided = Some(Status::Cancelled);
            hold.cancelled = Some(Cancellation { at: timestamp(now), reason: reason.clone() });
            if keep(&self.store, &hold, revision).await? {
                return Ok(Some(hold));
            }
        }
    }

    /// The holds that expired since the last call, each claimed once across replicas (the one
    /// whose compare-and-set wins announces it).
    pub async fn newly_expired(&self, now: DateTime<Utc>) -> Result<Vec<Hold>, StateError> {
        let mut won = Vec::new();
        for hold in self.list().await? {
            if hold.expiry_announced || hold.status(now) != Status::Expired {
                continue;
            }
            let Some((revision, mut stored)) = self.store.hold::<Hold>(&hold.id).await? else { continue };
            if stored.expiry_announced {
                continue;
            }
            stored.expiry_announced = true;
            if keep(&self.store, &stored, revision).await? {
                won.push(stored);
            }
        }
        Ok(won)
    }

    /// Counts a verdict signed by an approver's key: verified against the approver keys, then
    /// counted like any other. Returns the hold after it and who signed.
    pub async fn verdict(
        &self,
        id: &str,
        signed: &SignedVerdict,
        now: DateTime<Utc>,
    ) -> Result<(Hold, String), Refused> {
        let statement = signed.statement();
        // A verdict made for another hold or request says so, whoever signed it.
        let hold = self.get(id).await?.ok_or_else(|| Refused::NoSuchHold(id.to_string()))?;
        if statement.hold != hold.id || statement.digest != hold.digest {
            return Err(Refused::AnotherHold { hold: statement.hold, digest: statement.digest });
        }
        let signature = BASE64.decode(&signed.signature).map_err(|_| Refused::NotAnApprover)?;
        let message = statement.message();
        let approver = signed_by(&self.settings.approvers, &message, &signature).ok_or(Refused::NotAnApprover)?;
        Ok((self.count(id, &statement, &approver, now).await?, approver))
    }

    /// Counts `approver`'s verdict, however it was proven (a key's signature, a passkey's
    /// assertion): bound to this hold and request, recent, once per approver, only while
    /// pending. Returns the hold after it.
    pub async fn count(
        &self,
        id: &str,
        statement: &VerdictStatement,
        approver: &str,
        now: DateTime<Utc>,
    ) -> Result<Hold, Refused> {
        loop {
            let (revision, mut hold): (u64, Hold) =
                self.store.hold(id).await?.ok_or_else(|| Refused::NoSuchHold(id.to_string()))?;
            if statement.hold != hold.id || statement.digest != hold.digest {
                return Err(Refused::AnotherHold { hold: statement.hold.clone(), digest: statement.digest.clone() });
            }
            let at = parse_time(&statement.at).ok_or_else(|| Refused::Stale(statement.at.clone()))?;
            if (at - now).abs() > chrono::Duration::from_std(CLOCK_SKEW).unwrap_or(chrono::Duration::zero()) {
                return Err(Refused::Stale(statement.at.clone()));
            }
            match hold.status(now) {
                Status::Pending => {}
                other => return Err(Refused::NotPending(other)),
            }
            let counted = hold.approvals.iter().map(|a| &a.approver).chain(hold.rejections.iter().map(|r| &r.approver));
            if counted.into_iter().any(|name| name == approver) {
                return Err(Refused::AlreadyCounted(approver.to_string()));
            }
            match statement.verdict {
                Verdict::Approve => {
                    hold.approvals.push(Approval { approver: approver.to_string(), at: timestamp(now) });
                    if hold.approvals.len() >= hold.required as usize {
                        hold.decided = Some(Status::Approved);
                    }
                }
                Verdict::Reject if statement.reason.trim().is_empty() => return Err(Refused::NoReason),
                Verdict::Reject => {
                    let reason = statement.reason.clone();
                    hold.rejections.push(Rejection { approver: approver.to_string(), at: timestamp(now), reason });
                    hold.decided = Some(Status::Rejected);
                }
            }
            // Compare-and-set: a concurrent verdict makes this one start again from the new state.
            if keep(&self.store, &hold, revision).await? {
                return Ok(hold);
            }
        }
    }
}
