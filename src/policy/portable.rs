//! What `check` warns about because OPA would decide it differently than this engine — the two
//! traps found by deciding every fixture and mutant under OPA's own evaluator (issue: "Policies
//! that mean the same under OPA"):
//!
//! - **`not` over a call with an argument that may be undefined.** OPA evaluates a call's
//!   arguments (and a call that is an operand of a comparison) *before* the negation, so an
//!   undefined one fails the whole rule instead of making the `not` true (open-policy-agent/opa#7558):
//!   `not decimal.cmp(x, limit) <= 0`, `not o.address in addresses`, `not f(input.x)`.
//!   Portable: `not helper(args)` with every argument defined (read fields with `object.get`).
//! - **Iterating a value not known to be a collection** (`some d in tx.destinations`): on a
//!   number this engine fails (the fallback) where OPA iterates nothing. Portable: guard it
//!   (`is_array(tx.destinations)`) or read it with a default (`object.get(tx, "destinations", [])`).
//!
//! References into `data` (the set's own documents, or a rule naming one), the input document's
//! own members (`input.request`, `input.context`), and a reference an earlier statement of the
//! same body already used (`decimal.valid(tx.amountStr)`) count as defined.

use std::collections::BTreeSet;

use regorus::Engine;
use regorus::unstable::{BUILTINS, Expr, Literal, Parser, Query, Ref, Rule, RuleHead};

use super::lint::Finding;

/// Every portability warning of the modules loaded in `engine`.
pub fn warnings(engine: &mut Engine) -> Vec<Finding> {
    let mut findings = Vec::new();
    for module in engine.get_modules().iter() {
        let mut data_aliases: BTreeSet<String> =
            super::lint::data_imports(module).into_keys().chain(["data".to_string()]).collect();
        // A rule that names a data document (`settings := data.treasury`) is as defined as it.
        for rule in &module.policy {
            if let Rule::Spec { head: RuleHead::Compr { refr, assign: Some(assign), .. }, bodies, .. } = rule.as_ref()
                && bodies.iter().all(|b| b.query.stmts.is_empty())
            {
                let value = assign.value.span().text();
                let root = value.split(['.', '[']).next().unwrap_or("");
                if data_aliases.contains(root) {
                    data_aliases.insert(refr.span().text().to_string());
                }
            }
        }
        let mut walker = Walker { data: &data_aliases, findings: &mut findings };
        for rule in &module.policy {
            if let Rule::Spec { bodies, .. } = rule.as_ref() {
                bodies.iter().for_each(|body| walker.query(&body.query));
            }
        }
    }
    findings.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    findings.dedup();
    findings
}

struct Walker<'a> {
    data: &'a BTreeSet<String>,
    findings: &'a mut Vec<Finding>,
}

impl Walker<'_> {
    /// One body, in order: what earlier statements referenced counts as defined after them.
    fn query(&mut self, query: &Ref<Query>) {
        let mut guarded = BTreeSet::new();
        for stmt in &query.stmts {
            match &stmt.literal {
                Literal::NotExpr { expr, .. } => self.negated(expr, &guarded),
                Literal::SomeIn { collection, .. } => {
                    self.iterated(collection, &guarded);
                    mentions(collection, &mut guarded);
                }
                Literal::Expr { expr, .. } => {
                    self.nested(expr);
                    mentions(expr, &mut guarded);
                }
                Literal::Every { domain, query, .. } => {
                    self.iterated(domain, &guarded);
                    self.query(query);
                }
                Literal::SomeVars { .. } => {}
            }
        }
    }

    /// Comprehensions inside an expression have bodies of their own.
    fn nested(&mut self, expr: &Ref<Expr>) {
        visit(expr, &mut |e| match e {
            Expr::ArrayCompr { query, .. } | Expr::SetCompr { query, .. } | Expr::ObjectCompr { query, .. } => {
                self.query(query)
            }
            _ => {}
        });
    }

    fn negated(&mut self, expr: &Ref<Expr>, guarded: &BTreeSet<String>) {
        let mut hoisted = None;
        visit(expr, &mut |e| {
            let args: Vec<&Ref<Expr>> = match e {
                Expr::Call { params, .. } => params.iter().collect(),
                Expr::Membership { key, value, collection, .. } => key.iter().chain([value, collection]).collect(),
                // A call that is an operand of a comparison is evaluated before the negation.
                Expr::BinExpr { lhs, rhs, .. } | Expr::BoolExpr { lhs, rhs, .. } | Expr::ArithExpr { lhs, rhs, .. } => {
                    [lhs, rhs].into_iter().filter(|o| matches!(o.as_ref(), Expr::Call { .. })).collect()
                }
                _ => Vec::new(),
            };
            if hoisted.is_none() {
                hoisted =
                    args.into_iter().find(|a| self.may_be_undefined(a, guarded)).map(|a| a.span().text().to_string());
            }
        });
        if let Some(argument) = hoisted {
            let span = expr.span();
            self.findings.push(Finding {
                file: span.source.get_path().clone(),
                line: span.line,
                message: format!(
                    "not over `{}`: OPA evaluates `{argument}` before the negation, and if it is undefined the rule \
                     does not fire there (open-policy-agent/opa#7558); portable: `not helper(…)` with every argument \
                     defined (fields read with object.get)",
                    span.text()
                ),
            });
        }
    }

    fn iterated(&mut self, collection: &Ref<Expr>, guarded: &BTreeSet<String>) {
        if matches!(collection.as_ref(), Expr::RefDot { .. } | Expr::RefBrack { .. })
            && self.may_be_undefined(collection, guarded)
        {
            let span = collection.span();
            self.findings.push(Finding {
                file: span.source.get_path().clone(),
                line: span.line,
                message: format!(
                    "iterating `{}`, which may not be a collection: here a number fails the request, under OPA it \
                     iterates nothing; portable: guard it (is_array({0})) or read it with a default (object.get(…, []))",
                    span.text()
                ),
            });
        }
    }

    /// Whether `expr` may have no value: a field of something (not the set's own data) not yet
    /// used in the body, or a call of anything but a builtin — or anything built of those.
    fn may_be_undefined(&self, expr: &Ref<Expr>, guarded: &BTreeSet<String>) -> bool {
        match expr.as_ref() {
            Expr::RefDot { .. } | Expr::RefBrack { .. } => {
                let text = expr.span().text();
                let root = text.split(['.', '[']).next().unwrap_or("");
                // The input document always has these (the server builds it).
                let given = matches!(text, "input.request" | "input.context" | "input.kind");
                !given && !self.data.contains(root) && !guarded.contains(text)
            }
            Expr::Call { fcn, params, .. } => {
                let name = Parser::get_path_ref_components(fcn)
                    .map(|c| c.iter().map(|s| s.text()).collect::<Vec<_>>().join("."))
                    .unwrap_or_default();
                !BUILTINS.contains_key(name.as_str()) || params.iter().any(|p| self.may_be_undefined(p, guarded))
            }
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                items.iter().any(|i| self.may_be_undefined(i, guarded))
            }
            Expr::Object { fields, .. } => fields.iter().any(|(_, _, v)| self.may_be_undefined(v, guarded)),
            Expr::BinExpr { lhs, rhs, .. } | Expr::ArithExpr { lhs, rhs, .. } | Expr::BoolExpr { lhs, rhs, .. } => {
                self.may_be_undefined(lhs, guarded) || self.may_be_undefined(rhs, guarded)
            }
            _ => false,
        }
    }
}

/// The references an expression uses, by their text.
fn mentions(expr: &Ref<Expr>, into: &mut BTreeSet<String>) {
    visit(expr, &mut |e| {
        if let Expr::RefDot { span, .. } | Expr::RefBrack { span, .. } = e {
            into.insert(span.text().to_string());
        }
    });
}

/// Calls `f` on `expr` and every expression inside it (not into comprehension bodies).
fn visit(expr: &Ref<Expr>, f: &mut dyn FnMut(&Expr)) {
    f(expr.as_ref());
    match expr.as_ref() {
        Expr::Call { params, .. } => params.iter().for_each(|p| visit(p, f)),
        Expr::Array { items, .. } | Expr::Set { items, .. } => items.iter().for_each(|i| visit(i, f)),
        Expr::Object { fields, .. } => fields.iter().for_each(|(_, k, v)| {
            visit(k, f);
            visit(v, f);
        }),
        Expr::UnaryExpr { expr, .. } => visit(expr, f),
        Expr::RefDot { refr, .. } => visit(refr, f),
        Expr::RefBrack { refr, index, .. } => {
            visit(refr, f);
            visit(index, f);
        }
        Expr::BinExpr { lhs, rhs, .. }
        | Expr::BoolExpr { lhs, rhs, .. }
        | Expr::ArithExpr { lhs, rhs, .. }
        | Expr::AssignExpr { lhs, rhs, .. } => {
            visit(lhs, f);
            visit(rhs, f);
        }
        Expr::Membership { key, value, collection, .. } => {
            key.iter().chain([value, collection]).for_each(|e| visit(e, f));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warned(body: &str) -> Vec<u32> {
        let mut engine = Engine::new();
        let source = format!("package p\nimport rego.v1\nimport data.lib.t\n{body}\n");
        engine.add_policy("p.rego".into(), source).expect("parses");
        warnings(&mut engine).into_iter().map(|f| f.line).collect()
    }

    /// The shapes OPA decides differently are found; their portable forms, and guarded or
    /// data-rooted references, are not.
    #[test]
    fn the_traps_and_only_the_traps() {
        let cases: [(&str, bool); 12] = [
            ("r if not decimal.cmp(decimal.sum([input.a, \"1\"]), \"2\") <= 0", true),
            ("r if { some o in t.outputs; not o.address in {\"a\"} }", true),
            ("r if not f(input.x)\nf(x) if x", true),
            ("r if { not count(input.x) > 1 }", true),
            ("r if { some d in input.destinations }", true),
            ("r if { o := input.o; not o.address == \"a\" }", false),
            ("r if { some o in t.outputs; not object.get(o, \"address\", \"none\") in {\"a\"} }", false),
            ("r if { decimal.valid(input.amount); not at_most(input.amount, \"5\") }\nat_most(a, b) if a == b", false),
            ("r if not input.flag", false),
            ("r if { is_array(input.destinations); some d in input.destinations }", false),
            ("r if { some d in t.list }", false),
            ("r if { not object.get(input, \"op\", \"\") in data.allowed }", false),
        ];
        for (body, trap) in cases {
            assert_eq!(!warned(body).is_empty(), trap, "{body}: {:?}", warned(body));
        }
    }
}
