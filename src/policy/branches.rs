//! Coverage that says what the tests did not reach. Line coverage as regorus gathers it counts the
//! lines of rule heads and bodies, but not the value of an `else` branch: a `decision := … if {…}
//! else := … if {…} else := …` chain whose middle branch no test takes showed 100 %. And a file no
//! test reached was counted by other rules than one that was, so the denominator changed with
//! the tests run.
//!
//! So, compiled for coverage only, every `else` value `V` becomes `cosigner_guard.branch(N, V)` —
//! the same value, recorded as taken when the branch gives it — and each file's countable lines
//! are computed from its syntax tree as regorus counts them, whether or not a test reached it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use regorus::coverage::File;
use regorus::unstable::{Expr, Literal, Query, Ref, Rule, RuleHead};
use regorus::{Engine, Value};

/// The extension wrapping `else` values.
const BRANCH: &str = "cosigner_guard.branch";

/// Where each instrumented `else` value is, and which were taken.
#[derive(Default)]
pub struct Branches {
    /// (file, line) of branch N.
    sites: Vec<(String, u32)>,
    taken: Arc<Mutex<BTreeSet<usize>>>,
}

impl Branches {
    /// The text to compile for `path`: `text` with each `else` value wrapped (same lines).
    pub fn instrument(&mut self, path: &str, text: &str) -> String {
        let mut engine = Engine::new();
        if engine.add_policy(path.to_string(), text.to_string()).is_err() {
            return text.to_string(); // compiling it will report the error
        }
        let mut wraps: Vec<(usize, usize, usize)> = Vec::new(); // (start, end, branch)
        for module in engine.get_modules().iter() {
            for rule in &module.policy {
                let Rule::Spec { bodies, .. } = rule.as_ref() else { continue };
                for assign in bodies.iter().filter(|b| b.is_else).filter_map(|b| b.assign.as_ref()) {
                    // The value is what follows `:=` (or `=`) in the assignment's span: a
                    // multi-field object's own span starts at its last field in regorus 0.14.
                    let span = &assign.span;
                    let written = span.text();
                    let after_op = written.find('=').map_or(0, |i| i + 1);
                    let value_at = after_op + (written.len() - after_op - written[after_op..].trim_start().len());
                    // A string's span stops before its closing quote.
                    let mut end = span.end as usize;
                    if let Some(quote @ ('"' | '`')) = written[value_at..].chars().next()
                        && text[end..].starts_with(quote)
                    {
                        end += 1;
                    }
                    wraps.push((span.start as usize + value_at, end, self.sites.len()));
                    self.sites.push((path.to_string(), assign.value.span().line));
                }
            }
        }
        let mut out = text.to_string();
        wraps.sort_by_key(|w| std::cmp::Reverse(w.0));
        for (start, end, branch) in wraps {
            if end <= out.len() && out.is_char_boundary(start) && out.is_char_boundary(end) {
                out.insert(end, ')');
                out.insert_str(start, &format!("{BRANCH}({branch}, "));
            }
        }
        out
    }

    pub fn register(&self, engine: &mut Engine) -> anyhow::Result<()> {
        let taken = self.taken.clone();
        engine.add_extension(
            BRANCH.into(),
            2,
            Box::new(move |mut args: Vec<Value>| {
                if let Some(n) = args.first().and_then(|n| n.as_u64().ok()) {
                    taken.lock().unwrap_or_else(|p| p.into_inner()).insert(n as usize);
                }
                Ok(args.pop().unwrap_or(Value::Undefined))
            }),
        )
    }

    /// Forgets what compiling took (it evaluates the entrypoints once).
    pub fn reset(&self) {
        self.taken.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Counts `file`'s `else` values: covered when taken, else not.
    pub fn apply(&self, file: &mut File) {
        let taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        for (n, (path, line)) in self.sites.iter().enumerate() {
            if *path != file.path {
                continue;
            }
            if taken.contains(&n) {
                file.not_covered.remove(line);
                file.covered.insert(*line);
            } else {
                file.covered.remove(line);
                file.not_covered.insert(*line);
            }
        }
    }
}

/// The lines regorus's coverage counts in `text` (those of rule heads' values, set keys, default
/// values and body expressions; a comprehension by its query), for a file no test reached.
pub fn countable_lines(path: &str, text: &str) -> BTreeSet<u32> {
    let mut lines = BTreeSet::new();
    let mut engine = Engine::new();
    if engine.add_policy(path.to_string(), text.to_string()).is_err() {
        return lines;
    }
    for module in engine.get_modules().iter() {
        for rule in &module.policy {
            match rule.as_ref() {
                Rule::Spec { head, bodies, .. } => {
                    match head {
                        RuleHead::Compr { assign, .. } | RuleHead::Func { assign, .. } => {
                            assign.iter().for_each(|a| expr_lines(&a.value, &mut lines));
                        }
                        RuleHead::Set { key, .. } => key.iter().for_each(|k| expr_lines(k, &mut lines)),
                    }
                    bodies.iter().for_each(|b| query_lines(&b.query, &mut lines));
                }
                Rule::Default { value, .. } => expr_lines(value, &mut lines),
            }
        }
    }
    lines
}

fn query_lines(query: &Ref<Query>, lines: &mut BTreeSet<u32>) {
    for stmt in &query.stmts {
        match &stmt.literal {
            Literal::SomeVars { .. } => {}
            Literal::SomeIn { value, collection, .. } => {
                expr_lines(value, lines);
                expr_lines(collection, lines);
            }
            Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => expr_lines(expr, lines),
            Literal::Every { domain, query, .. } => {
                expr_lines(domain, lines);
                query_lines(query, lines);
            }
        }
    }
}

fn expr_lines(expr: &Ref<Expr>, lines: &mut BTreeSet<u32>) {
    let line = |e: &Ref<Expr>, lines: &mut BTreeSet<u32>| {
        lines.insert(e.span().line);
    };
    match expr.as_ref() {
        Expr::ArrayCompr { query, .. } | Expr::SetCompr { query, .. } | Expr::ObjectCompr { query, .. } => {
            query_lines(query, lines);
        }
        Expr::Array { items, .. } | Expr::Set { items, .. } => {
            line(expr, lines);
            items.iter().for_each(|i| expr_lines(i, lines));
        }
        Expr::Object { fields, .. } => {
            line(expr, lines);
            for (_, key, value) in fields {
                expr_lines(key, lines);
                expr_lines(value, lines);
            }
        }
        Expr::Call { params, .. } => {
            line(expr, lines);
            params.iter().for_each(|p| expr_lines(p, lines));
        }
        Expr::UnaryExpr { expr: inner, .. } | Expr::RefDot { refr: inner, .. } => {
            line(expr, lines);
            expr_lines(inner, lines);
        }
        Expr::RefBrack { refr, index, .. } => {
            line(expr, lines);
            expr_lines(refr, lines);
            expr_lines(index, lines);
        }
        Expr::BinExpr { lhs, rhs, .. }
        | Expr::BoolExpr { lhs, rhs, .. }
        | Expr::ArithExpr { lhs, rhs, .. }
        | Expr::AssignExpr { lhs, rhs, .. } => {
            line(expr, lines);
            expr_lines(lhs, lines);
            expr_lines(rhs, lines);
        }
        Expr::Membership { key, value, collection, .. } => {
            line(expr, lines);
            key.iter().chain([value, collection]).for_each(|e| expr_lines(e, lines));
        }
        _ => line(expr, lines),
    }
}
