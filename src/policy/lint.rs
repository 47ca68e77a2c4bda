//! What `cosigner-guard check` finds in a set's syntax tree beyond compiling it — errors that would
//! otherwise show only when a request reaches them, as the fallback:
//!
//! - a call to a function that exists nowhere: not a builtin, not one of this handler's, not a
//!   function of the set (regorus reports it only when the call is evaluated);
//! - a decision literal the server would refuse: an `action` that is not one of the four, or a key
//!   other than `action`, `reason`, `record` and `hold`;
//! - an entrypoint defined unconditionally and again elsewhere: whenever the other definition's
//!   conditions hold, the two conflict and evaluation fails.

use std::collections::{BTreeMap, BTreeSet};

use regorus::Engine;
use regorus::unstable::{BUILTINS, Expr, Literal, Parser, Query, Ref, Rule, RuleHead};

use super::Entrypoints;
use super::analysis::{RuleKind, rules};

/// One problem, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub line: u32,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

const DECISION_KEYS: [&str; 4] = ["action", "reason", "record", "hold"];
const ACTIONS: [&str; 4] = ["APPROVE", "REJECT", "RETRY", "IGNORE"];

/// Every finding of the modules loaded in `engine`.
pub fn lint(engine: &mut Engine, entrypoints: &Entrypoints) -> Vec<Finding> {
    let defined = rules(engine);
    let functions: BTreeSet<String> =
        defined.iter().filter(|r| r.kind == RuleKind::Function).map(|r| r.path()).collect();
    let entrypoints = [entrypoints.transaction.as_str(), entrypoints.config_change.as_str()];
    let mut findings = Vec::new();
    // Unconditional definitions of each entrypoint, and how many definitions it has.
    let mut definitions: BTreeMap<String, (Vec<(String, u32)>, usize)> = BTreeMap::new();
    for module in engine.get_modules().iter() {
        let Ok(package) = Parser::get_path_ref_components(&module.package.refr) else { continue };
        let package = std::iter::once("data").chain(package.iter().map(|s| s.text())).collect::<Vec<_>>().join(".");
        let imports = data_imports(module);
        let mut calls = Calls { package: &package, imports: &imports, functions: &functions, findings: &mut findings };
        for rule in &module.policy {
            match rule.as_ref() {
                Rule::Spec { head, bodies, span } => {
                    let (refr, value) = match head {
                        RuleHead::Compr { refr, assign, .. } => (refr, assign.as_ref().map(|a| &a.value)),
                        RuleHead::Set { refr, key, .. } => (refr, key.as_ref()),
                        RuleHead::Func { refr, args, assign, .. } => {
                            args.iter().for_each(|a| calls.expr(a));
                            (refr, assign.as_ref().map(|a| &a.value))
                        }
                    };
                    let mut values: Vec<&Ref<Expr>> = value.into_iter().collect();
                    for body in bodies {
                        calls.query(&body.query);
                        values.extend(body.assign.as_ref().map(|a| &a.value));
                    }
                    values.iter().for_each(|v| calls.expr(v));
                    let path = rule_path(&package, refr);
                    if entrypoints.contains(&path.as_str()) && matches!(head, RuleHead::Compr { .. }) {
                        values.iter().for_each(|v| check_decision(v, calls.findings));
                        let entry = definitions.entry(path).or_default();
                        entry.1 += 1;
                        if bodies.iter().all(|b| b.query.stmts.is_empty()) {
                            entry.0.push((span.source.get_path().clone(), span.line));
                        }
                    }
                }
                Rule::Default { refr, value, .. } => {
                    calls.expr(value);
                    if entrypoints.contains(&rule_path(&package, refr).as_str()) {
                        check_decision(value, calls.findings);
                    }
                }
            }
        }
    }
    for (path, (unconditional, count)) in definitions {
        if let Some((file, line)) = unconditional.first().filter(|_| count > 1) {
            findings.push(Finding {
                file: file.clone(),
                line: *line,
                message: format!(
                    "{path} is defined here without a condition and {} more time(s) elsewhere: whenever another \
                     definition's conditions hold they conflict and the request gets the fallback (use `default`, or `else`)",
                    count - 1
                ),
            });
        }
    }
    findings.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    findings.dedup();
    findings
}

/// A module's imports of `data`: alias → full path (`tap` → `data.lib.tap`).
pub(super) fn data_imports(module: &regorus::unstable::Module) -> BTreeMap<String, String> {
    module
        .imports
        .iter()
        .filter_map(|import| {
            let path = Parser::get_path_ref_components(&import.refr).ok()?;
            let path: Vec<&str> = path.iter().map(|s| s.text()).collect();
            if path.first() != Some(&"data") {
                return None;
            }
            let alias = import.r#as.as_ref().map_or(path.last()?.to_string(), |a| a.text().to_string());
            Some((alias, path.join(".")))
        })
        .collect()
}

fn rule_path(package: &str, refr: &Ref<Expr>) -> String {
    let name = Parser::get_path_ref_components(refr).ok().and_then(|c| c.last().map(|s| s.text().to_string()));
    format!("{package}.{}", name.unwrap_or_default())
}

/// A decision written as an object literal must be one the server accepts.
fn check_decision(value: &Ref<Expr>, findings: &mut Vec<Finding>) {
    let Expr::Object { fields, .. } = value.as_ref() else { return };
    for (span, key, value) in fields {
        let Some(key) = string_literal(key) else { continue };
        let at = |message| Finding { file: span.source.get_path().clone(), line: span.line, message };
        if !DECISION_KEYS.contains(&key.as_str()) {
            findings.push(at(format!(
                "decision key {key:?} is not one of {}: the server refuses the decision (invalid_decision)",
                DECISION_KEYS.join(", ")
            )));
        }
        if key == "action"
            && let Some(action) = string_literal(value)
            && !ACTIONS.contains(&action.as_str())
        {
            findings.push(at(format!(
                "action {action:?} is not one of {}: the server refuses the decision (invalid_decision)",
                ACTIONS.join(", ")
            )));
        }
    }
}

fn string_literal(expr: &Ref<Expr>) -> Option<String> {
    match expr.as_ref() {
        Expr::String { value, .. } | Expr::RawString { value, .. } => value.as_string().ok().map(|s| s.to_string()),
        _ => None,
    }
}

/// Walks expressions, reporting calls that resolve to nothing.
struct Calls<'a> {
    package: &'a str,
    imports: &'a BTreeMap<String, String>,
    functions: &'a BTreeSet<String>,
    findings: &'a mut Vec<Finding>,
}

impl Calls<'_> {
    fn query(&mut self, query: &Ref<Query>) {
        for stmt in &query.stmts {
            match &stmt.literal {
                Literal::SomeVars { .. } => {}
                Literal::SomeIn { key, value, collection, .. } => {
                    key.iter().chain([value, collection]).for_each(|e| self.expr(e));
                }
                Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => self.expr(expr),
                Literal::Every { domain, query, .. } => {
                    self.expr(domain);
                    self.query(query);
                }
            }
            for with in &stmt.with_mods {
                self.expr(&with.r#as);
            }
        }
    }

    fn expr(&mut self, expr: &Ref<Expr>) {
        match expr.as_ref() {
            Expr::Call { span, fcn, params, .. } => {
                self.call(span, fcn);
                params.iter().for_each(|p| self.expr(p));
            }
            Expr::Array { items, .. } | Expr::Set { items, .. } => items.iter().for_each(|i| self.expr(i)),
            Expr::Object { fields, .. } => fields.iter().for_each(|(_, k, v)| {
                self.expr(k);
                self.expr(v);
            }),
            Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
                self.expr(term);
                self.query(query);
            }
            Expr::ObjectCompr { key, value, query, .. } => {
                self.expr(key);
                self.expr(value);
                self.query(query);
            }
            Expr::UnaryExpr { expr, .. } => self.expr(expr),
            Expr::RefDot { refr, .. } => self.expr(refr),
            Expr::RefBrack { refr, index, .. } => {
                self.expr(refr);
                self.expr(index);
            }
            Expr::BinExpr { lhs, rhs, .. }
            | Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. }
            | Expr::AssignExpr { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            Expr::Membership { key, value, collection, .. } => {
                key.iter().chain([value, collection]).for_each(|e| self.expr(e));
            }
            _ => {}
        }
    }

    fn call(&mut self, span: &regorus::unstable::Span, fcn: &Ref<Expr>) {
        let Ok(components) = Parser::get_path_ref_components(fcn) else { return };
        let parts: Vec<&str> = components.iter().map(|s| s.text()).collect();
        let name = parts.join(".");
        if name == "print"
            || BUILTINS.contains_key(name.as_str())
            || super::builtins::EXTENSIONS.contains(&name.as_str())
        {
            return;
        }
        let full = match parts.as_slice() {
            ["data", ..] => name.clone(),
            [first, rest @ ..] if self.imports.contains_key(*first) => {
                std::iter::once(self.imports[*first].as_str()).chain(rest.iter().copied()).collect::<Vec<_>>().join(".")
            }
            [only] => format!("{}.{only}", self.package),
            _ => name.clone(),
        };
        if !self.functions.contains(&full) {
            self.findings.push(Finding {
                file: span.source.get_path().clone(),
                line: span.line,
                message: format!(
                    "unknown function {name}: not a builtin, nor a function of this policy set (it would fail every request that reaches it)"
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint_source(source: &str) -> Vec<String> {
        let mut engine = Engine::new();
        engine.add_policy("p.rego".into(), source.into()).expect("parses");
        lint(
            &mut engine,
            &Entrypoints { transaction: "data.p.decision".into(), config_change: "data.q.decision".into() },
        )
        .into_iter()
        .map(|f| format!("{}: {}", f.line, f.message.split(':').next().unwrap_or("")))
        .collect()
    }

    #[test]
    fn unknown_functions_bad_decision_literals_and_unconditional_conflicts_are_found() {
        let header = "package p\nimport rego.v1\nimport data.lib.tap\n";
        let cases: [(&str, Vec<&str>); 6] = [
            ("decision := {\"action\": \"APPROVE\"} if count([1]) > 0", vec![]),
            (
                "decision := {\"action\": \"APPROVE\"} if treasury_limits.within(1)",
                vec!["4: unknown function treasury_limits.within"],
            ),
            ("f(x) := x\ng := f(1)\nh := data.p.f(2)\nk := decimal.sum([\"1\"])", vec![]),
            (
                "decision := {\"action\": \"Approve\"}",
                vec!["4: action \"Approve\" is not one of APPROVE, REJECT, RETRY, IGNORE"],
            ),
            (
                "default decision := {\"action\": \"REJECT\", \"reasn\": \"x\"}",
                vec!["4: decision key \"reasn\" is not one of action, reason, record, hold"],
            ),
            (
                "decision := {\"action\": \"APPROVE\"}\ndecision := {\"action\": \"REJECT\"} if input.x",
                vec!["4: data.p.decision is defined here without a condition and 1 more time(s) elsewhere"],
            ),
        ];
        for (source, want) in cases {
            assert_eq!(lint_source(&format!("{header}{source}\n")), want, "{source}");
        }
    }
}
