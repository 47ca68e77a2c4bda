//! `test --export-decisions FILE`: every decision the fixture cases and mutants make, with the
//! input document, the handler builtins' calls and the answer, one JSON line each — what the OPA
//! portability check (`.ci/opa_portability.py`) decides again under OPA's own evaluator.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde_json::json;

use crate::pipeline::Decided;
use crate::request::RequestKind;

pub struct Exporter {
    out: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl Exporter {
    /// Starts `path` with the set's data document (`{"data": …}`), as the engine holds it.
    pub fn create(path: &Path, data: &serde_json::Value) -> std::io::Result<Self> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(out, "{}", json!({ "data": data }))?;
        Ok(Self { out: Mutex::new(out) })
    }

    /// One Rego unit test's builtin calls (the test itself passed or failed under regorus).
    pub fn unit_test(&self, test: &str, calls: &[crate::policy::velocity::BuiltinCall]) {
        self.write(json!({ "test": test, "calls": calls }));
    }

    /// One decision of case `case` (a mutant's name says which).
    pub fn decided(&self, case: &str, kind: RequestKind, decided: &Decided) {
        let decision = &decided.decision;
        let line = json!({
            "case": case,
            "kind": kind,
            "input": decided.input,
            "calls": decided.state.calls,
            "action": decision.action,
            "reason": decision.reason,
            "records": decision.records,
            "source": decision.source.to_string(),
        });
        self.write(line);
    }

    fn write(&self, line: serde_json::Value) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(error) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            tracing::error!(%error, "a decision could not be exported");
        }
    }
}
