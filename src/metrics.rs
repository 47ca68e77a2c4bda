//! Prometheus metrics: decisions, refusals, latencies, reloads, the active revision, in-flight
//! requests, decision-log errors, the state store, holds and their verdicts and notifications. Rendered in the text format at the admin listener's `/metrics`.

use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::decision::Decision;
use crate::request::RequestKind;

type Labels3 = [(&'static str, String); 3];
type Labels1 = [(&'static str, String); 1];
type Labels2 = [(&'static str, String); 2];

pub struct Metrics {
    registry: Registry,
    decisions: Family<Labels3, Counter>,
    refused: Family<Labels1, Counter>,
    request_seconds: Histogram,
    evaluation_seconds: Histogram,
    reloads: Family<Labels1, Counter>,
    tls_reloads: Family<Labels1, Counter>,
    revision: Family<Labels1, Gauge>,
    revision_now: Mutex<String>,
    reload_failed: Gauge,
    in_flight: Gauge,
    log_errors: Counter,
    state_conflicts: Counter,
    state_copy_reads: Counter,
    state_up: Gauge,
    holds: Family<Labels1, Gauge>,
    verdicts: Family<Labels1, Counter>,
    notifications: Family<Labels1, Counter>,
    webhook_events: Family<Labels2, Counter>,
    console_events: Family<Labels2, Counter>,
    released_records: Counter,
    /// Shadow evaluations, disagreements, dropped requests.
    shadow: [Counter; 3],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cosigner_guard");
        let decisions = Family::<Labels3, Counter>::default();
        registry.register("decisions", "Decisions answered, by request kind, action and source", decisions.clone());
        let refused = Family::<Labels1, Counter>::default();
        registry.register("refused_requests", "Requests refused without a decision, by class", refused.clone());
        // 100 µs to ~6.5 s.
        let request_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        registry.register(
            "request_duration_seconds",
            "Time from request received to answer ready",
            request_seconds.clone(),
        );
        let evaluation_seconds = Histogram::new(exponential_buckets(0.00001, 2.0, 20));
        registry.register("evaluation_duration_seconds", "Policy evaluation time", evaluation_seconds.clone());
        let reloads = Family::<Labels1, Counter>::default();
        registry.register("policy_reloads", "Policy reload attempts, by result", reloads.clone());
        let tls_reloads = Family::<Labels1, Counter>::default();
        registry.register("tls_reloads", "TLS certificate reload attempts, by result", tls_reloads.clone());
        let revision = Family::<Labels1, Gauge>::default();
        registry.register("policy_revision_info", "The active policy revision (value 1)", revision.clone());
        let reload_failed = Gauge::default();
        registry.register(
            "policy_reload_failed",
            "1 while the last reload failed and the previous policy set is still served, else 0",
            reload_failed.clone(),
        );
        let build = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register("build_info", "The running build: version and git revision (value 1)", build.clone());
        build
            .get_or_create(&vec![
                ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("revision".to_string(), env!("COSIGNER_GUARD_GIT_REVISION").to_string()),
            ])
            .set(1);
        let in_flight = Gauge::default();
        registry.register("in_flight_requests", "Requests being decided now", in_flight.clone());
        let log_errors = Counter::default();
        registry.register("decision_log_errors", "Decision-log write failures", log_errors.clone());
        let state_conflicts = Counter::default();
        registry.register(
            "state_conflicts",
            "Evaluations repeated because a concurrent decision changed a state key they read",
            state_conflicts.clone(),
        );
        let state_copy_reads = Counter::default();
        registry.register(
            "state_copy_reads",
            "Decisions whose state reads the replica's copy answered (Redis): no read round trip",
            state_copy_reads.clone(),
        );
        let state_up = Gauge::default();
        registry.register("state_up", "Whether the state store answers (1) or not (0)", state_up.clone());
        state_up.set(1);
        let holds = Family::<Labels1, Gauge>::default();
        registry.register("holds", "Holds kept in the state store, by status (at the last scrape)", holds.clone());
        let verdicts = Family::<Labels1, Counter>::default();
        registry.register("hold_verdicts", "Approvers' verdicts received, by outcome", verdicts.clone());
        let notifications = Family::<Labels1, Counter>::default();
        registry.register("hold_notifications", "Hold notifications, by result", notifications.clone());
        let console_events = Family::<Labels2, Counter>::default();
        registry.register(
            "console_events",
            "Approval console passkey ceremonies (register, sign_in, verdict), by result",
            console_events.clone(),
        );
        let webhook_events = Family::<Labels2, Counter>::default();
        registry.register(
            "webhook_events",
            "Fireblocks webhook deliveries, by event type and result",
            webhook_events.clone(),
        );
        let released_records = Counter::default();
        registry.register(
            "released_records",
            "Records of transactions that never moved, released from limits over time",
            released_records.clone(),
        );
        let shadow: [Counter; 3] = Default::default();
        let described = [
            ("shadow_evaluations", "Requests also decided by the candidate policy set ([policy] candidate_dir)"),
            ("shadow_disagreements", "Shadow evaluations whose action or reason differs from the answer given"),
            ("shadow_dropped", "Requests not shadowed: the candidate's queue was full (it never delays an answer)"),
        ];
        for ((name, help), counter) in described.into_iter().zip(&shadow) {
            registry.register(name, help, counter.clone());
        }
        Self {
            registry,
            decisions,
            refused,
            request_seconds,
            evaluation_seconds,
            reloads,
            tls_reloads,
            revision,
            revision_now: Mutex::new(String::new()),
            reload_failed,
            in_flight,
            log_errors,
            state_conflicts,
            state_copy_reads,
            state_up,
            holds,
            verdicts,
            notifications,
            webhook_events,
            console_events,
            released_records,
            shadow,
        }
    }

    /// A Fireblocks webhook delivery: its event type and what became of it.
    pub fn webhook_event(&self, event: &str, result: &'static str) {
        self.webhook_events.get_or_create(&[("event", event.to_string()), ("result", result.to_string())]).inc();
    }

    pub fn console_event(&self, event: &'static str, result: &'static str) {
        self.console_events.get_or_create(&[("event", event.to_string()), ("result", result.to_string())]).inc();
    }

    pub fn released_records(&self, count: usize) {
        self.released_records.inc_by(count as u64);
    }

    /// A shadow evaluation, and whether the candidate disagreed.
    pub fn shadowed(&self, disagreed: bool) {
        self.shadow[0].inc();
        self.shadow[1].inc_by(u64::from(disagreed));
    }

    pub fn shadow_dropped(&self) {
        self.shadow[2].inc();
    }

    /// (evaluations, disagreements, dropped) so far.
    pub fn shadow_counts(&self) -> (u64, u64, u64) {
        (self.shadow[0].get(), self.shadow[1].get(), self.shadow[2].get())
    }

    /// How many holds are in each status; every status appears, zero included.
    pub fn set_holds(&self, counts: &[(&'static str, i64)]) {
        for (status, count) in counts {
            self.holds.get_or_create(&[("status", status.to_string())]).set(*count);
        }
    }

    /// A verdict's outcome: `approve`, `reject`, or why it was refused.
    pub fn verdict(&self, outcome: &'static str) {
        self.verdicts.get_or_create(&[("outcome", outcome.to_string())]).inc();
    }

    pub fn notified(&self, result: &'static str) {
        self.notifications.get_or_create(&[("result", result.to_string())]).inc();
    }

    pub fn decided(&self, kind: RequestKind, decision: &Decision, seconds: f64) {
        let labels = [
            ("kind", kind.as_str().to_string()),
            ("action", decision.action.as_str().to_string()),
            ("source", decision.source.to_string()),
        ];
        self.decisions.get_or_create(&labels).inc();
        self.request_seconds.observe(seconds);
    }

    pub fn refused(&self, class: &'static str, seconds: f64) {
        self.refused.get_or_create(&[("class", class.to_string())]).inc();
        self.request_seconds.observe(seconds);
    }

    /// A decision's evaluation time, how many evaluations it took, and whether the replica's copy
    /// of the state answered its reads.
    pub fn evaluated(&self, seconds: f64, evaluations: u32, copied: bool) {
        self.evaluation_seconds.observe(seconds);
        self.state_conflicts.inc_by(u64::from(evaluations.saturating_sub(1)));
        self.state_copy_reads.inc_by(u64::from(copied));
    }

    pub fn set_state_up(&self, up: bool) {
        self.state_up.set(i64::from(up));
    }

    /// A TLS pair was read again: `reloaded`, `unchanged` or `failed` (the old pair still served).
    pub fn tls_reloaded(&self, result: &'static str) {
        self.tls_reloads.get_or_create(&[("result", result.to_string())]).inc();
    }

    pub fn reloaded(&self, result: &'static str) {
        self.reloads.get_or_create(&[("result", result.to_string())]).inc();
        self.reload_failed.set(i64::from(result == "failed"));
    }

    /// Marks `revision` as the active one (an info metric: one series, value 1).
    pub fn set_revision(&self, revision: &str) {
        let mut now = self.revision_now.lock().unwrap_or_else(|p| p.into_inner());
        if *now != revision {
            self.revision.remove(&[("revision", now.clone())]);
            self.revision.get_or_create(&[("revision", revision.to_string())]).set(1);
            *now = revision.to_string();
        }
    }

    /// Counts a request as in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    pub fn log_error(&self) {
        self.log_errors.inc();
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
