//! The gate every decision passes: what a hold promises, kept whatever the policy answers.

use chrono::{DateTime, Utc};

use crate::decision::{Action, Decision};

use super::*;

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
        Status::Cancelled => {
            let why = hold.cancelled.as_ref().map(|c| format!(": {}", c.reason)).unwrap_or_default();
            overridden(Action::Reject, format!("hold cancelled{why}"))
        }
    }
}
