//! What a compiled policy set contains, read from its syntax tree: its rules (for `eval --explain`),
//! its unit tests (`test_*` rules), the modules its entrypoints can reach (the ones that decide),
//! and functions that call themselves — regorus would recurse until the stack overflows and abort
//! the process, so a set with one is refused.

use std::collections::{BTreeMap, BTreeSet};

use regorus::Engine;
use regorus::unstable::{Lexer, Parser, Rule, RuleHead, TokenKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Value,
    Set,
    Function,
}

/// One rule definition (a rule with several bodies or definitions appears once per definition).
#[derive(Debug, Clone)]
pub struct RuleInfo {
    /// `data.`-rooted package path, e.g. `data.cosigner.transaction`.
    pub package: String,
    pub name: String,
    pub kind: RuleKind,
    pub file: String,
    pub line: u32,
    /// The rule's source text.
    text: String,
}

impl RuleInfo {
    pub fn path(&self) -> String {
        format!("{}.{}", self.package, self.name)
    }

    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// Every rule head of the loaded modules that names a plain path (`a`, `a.b` heads use their last
/// component when it is the only one).
pub fn rules(engine: &mut Engine) -> Vec<RuleInfo> {
    let mut out = Vec::new();
    for module in engine.get_modules().iter() {
        let Ok(package) = Parser::get_path_ref_components(&module.package.refr) else { continue };
        let package = std::iter::once("data").chain(package.iter().map(|s| s.text())).collect::<Vec<_>>().join(".");
        for rule in &module.policy {
            let Rule::Spec { span, head, .. } = rule.as_ref() else { continue };
            let (refr, kind) = match head {
                RuleHead::Compr { refr, .. } => (refr, RuleKind::Value),
                RuleHead::Set { refr, .. } => (refr, RuleKind::Set),
                RuleHead::Func { refr, .. } => (refr, RuleKind::Function),
            };
            let Ok(components) = Parser::get_path_ref_components(refr) else { continue };
            let [name] = components.as_slice() else { continue };
            out.push(RuleInfo {
                package: package.clone(),
                name: name.text().to_string(),
                kind,
                file: span.source.get_path().clone(),
                line: span.line,
                text: span.text().to_string(),
            });
        }
    }
    out
}

/// The files of the modules a decision can reach from `roots` (the entrypoints' rule paths): a
/// module whose package is on the way to a root or below it, then, transitively, every module whose
/// package a reached module names (`data.lib.tap` in an import or a reference names `lib.tap`, its
/// parents and everything below it). A reference that is not static (`data[name]`, a bare `data`)
/// could name anything, and keeps every module. `None` when nothing can be left out.
///
/// Why: regorus charges every evaluation for every loaded module (about a microsecond each, more
/// for large ones), used or not.
pub fn reachable_modules(engine: &mut Engine, roots: &[&str]) -> Option<BTreeSet<String>> {
    let mut modules = Vec::new();
    for module in engine.get_modules().iter() {
        let package = Parser::get_path_ref_components(&module.package.refr).ok()?;
        let package: Vec<String> = package.iter().map(|c| c.text().to_string()).collect();
        let source = &module.package.span.source;
        modules.push((source.get_path().clone(), package, data_references(source)?));
    }
    let names = |path: &[String], package: &[String]| path.starts_with(package) || package.starts_with(path);
    // A root's package: `data.cosigner.transaction.decision` → `cosigner.transaction`.
    let mut wanted: Vec<Vec<String>> = roots
        .iter()
        .map(|root| {
            let path: Vec<String> = root.split('.').skip(1).map(str::to_string).collect();
            path[..path.len().saturating_sub(1)].to_vec()
        })
        .collect();
    let mut kept = BTreeSet::new();
    while let Some(path) = wanted.pop() {
        for (file, package, references) in &modules {
            if names(&path, package) && kept.insert(file.clone()) {
                wanted.extend(references.iter().cloned());
            }
        }
    }
    (kept.len() < modules.len()).then_some(kept)
}

/// The static `data.` paths a module's source names, without `data` (`data.lib.tap` → `[lib,
/// tap]`); `None` if it names `data` some other way. Comments and strings are the lexer's.
fn data_references(source: &regorus::Source) -> Option<Vec<Vec<String>>> {
    let mut lexer = Lexer::new(source);
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token().ok()?;
        if token.0 == TokenKind::Eof {
            break;
        }
        tokens.push((token.0, token.1.text().to_string()));
    }
    let mut found = Vec::new();
    for (at, (kind, text)) in tokens.iter().enumerate() {
        let field = at > 0 && tokens[at - 1].1 == ".";
        if *kind != TokenKind::Ident || text != "data" || field {
            continue;
        }
        let mut path = Vec::new();
        let mut next = at + 1;
        while tokens.get(next).is_some_and(|t| t.1 == ".")
            && let Some((TokenKind::Ident, name)) = tokens.get(next + 1)
        {
            path.push(name.clone());
            next += 2;
        }
        if path.is_empty() {
            return None;
        }
        found.push(path);
    }
    Some(found)
}

/// Functions that can call themselves, directly or through other functions of their package, with
/// the cycle as text (`f → g → f`).
pub fn recursive_functions(rules: &[RuleInfo]) -> Vec<(RuleInfo, String)> {
    let mut functions: BTreeMap<(String, String), Vec<&RuleInfo>> = BTreeMap::new();
    for rule in rules.iter().filter(|r| r.kind == RuleKind::Function) {
        functions.entry((rule.package.clone(), rule.name.clone())).or_default().push(rule);
    }
    let mut calls: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for ((package, name), definitions) in &functions {
        let callees = calls.entry((package.clone(), name.clone())).or_default();
        for definition in definitions {
            let code = code_only(&definition.text);
            // The head is the first occurrence of the name; calls come after it.
            let body = code.find('(').map_or("", |i| &code[i..]);
            for (other_package, other) in functions.keys() {
                if other_package == package && calls_function(body, other, package) {
                    callees.insert(other.clone());
                }
            }
        }
    }
    let mut found = Vec::new();
    for ((package, name), definitions) in &functions {
        if let Some(cycle) = cycle_from(package, name, &calls) {
            found.push((definitions[0].clone(), cycle));
        }
    }
    found
}

/// A path of calls from `start` back to itself, if there is one.
fn cycle_from(package: &str, start: &str, calls: &BTreeMap<(String, String), BTreeSet<String>>) -> Option<String> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in calls.get(&(package.to_string(), at.clone())).into_iter().flatten() {
            if next == start {
                return Some(format!("{} → {next}", path.join(" → ")));
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

/// Whether `code` calls `name(` as a bare name or as `data.<package>.name(`.
fn calls_function(code: &str, name: &str, package: &str) -> bool {
    let qualified = format!("{package}.{name}");
    let bytes = code.as_bytes();
    code.match_indices(name).any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let is_call = code[at + name.len()..].trim_start().starts_with('(');
        let bare = !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        let full = code[..at + name.len()].ends_with(&qualified);
        is_call && (bare || full)
    })
}

/// The code without comments and string literals, which could mention a name without calling it.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push_str("\"\"");
            }
            '`' => {
                for c in chars.by_ref() {
                    if c == '`' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyse(source: &str) -> Vec<String> {
        let mut engine = Engine::new();
        engine.add_policy("p.rego".into(), source.into()).expect("parses");
        recursive_functions(&rules(&mut engine))
            .into_iter()
            .map(|(rule, cycle)| format!("{}: {cycle}", rule.name))
            .collect()
    }

    #[test]
    fn self_and_mutual_recursion_are_found_and_plain_calls_are_not() {
        let cases = [
            ("f(x) := y if { y := f(x) }", vec!["f: f → f"]),
            ("f(x) := data.p.f(x)", vec!["f: f → f"]),
            ("f(x) := g(x)\ng(x) := f(x)", vec!["f: f → g → f", "g: g → f → g"]),
            ("f(x) := g(x)\ng(x) := x + 1", vec![]),
            ("f(x) := y if { y := x.f }\nh(x) := \"f(x)\" # f(x)", vec![]),
            ("f(x) := count(x)\nr := f([1])", vec![]),
        ];
        for (source, want) in cases {
            assert_eq!(analyse(&format!("package p\nimport rego.v1\n{source}\n")), want, "{source}");
        }
    }

    fn reached(modules: &[(&str, &str)]) -> Option<Vec<String>> {
        let mut engine = Engine::new();
        for (file, source) in modules {
            let source = source.replacen('\n', "\nimport rego.v1\n", 1);
            engine.add_policy((*file).into(), source).expect("parses");
        }
        reachable_modules(&mut engine, &["data.cosigner.transaction.decision", "data.cosigner.config_change.decision"])
            .map(|kept| kept.into_iter().collect())
    }

    /// A decision is evaluated against the modules it can reach; a module it cannot is left out,
    /// and anything that could name a module dynamically keeps them all.
    #[test]
    fn only_modules_the_entrypoints_can_name_are_left_out() {
        let lib = [
            ("tap.rego", "package lib.tap\nx := data.treasury.limit"),
            ("limits.rego", "package lib.limits\ny := data.lib.decimal.z"),
            ("decimal.rego", "package lib.decimal\nz := 1"),
            ("unused.rego", "package lib.unused\n# data.lib.limits, \"data.lib.limits\"\nw := input.data.lib"),
            ("config.rego", "package cosigner.config_change\ndecision := 1"),
            ("deeper.rego", "package cosigner.transaction.parts\np := 1"),
        ];
        let with = |transaction: &str| {
            let mut all = vec![("transaction.rego", transaction)];
            all.extend(lib);
            reached(&all)
        };
        // Imports, references and their dependencies, the entrypoints' packages and those below
        // them; comments, strings and fields named `data` name nothing.
        assert_eq!(
            with("package cosigner.transaction\nimport data.lib.limits as l\ndecision := l.y"),
            Some(
                vec!["config.rego", "decimal.rego", "deeper.rego", "limits.rego", "transaction.rego"]
                    .into_iter()
                    .map(String::from)
                    .collect()
            )
        );
        assert_eq!(
            with("package cosigner.transaction\ndecision := data.lib.tap.x"),
            Some(
                vec!["config.rego", "deeper.rego", "tap.rego", "transaction.rego"]
                    .into_iter()
                    .map(String::from)
                    .collect()
            )
        );
        // A parent package names everything below it.
        assert_eq!(with("package cosigner.transaction\ndecision := data.lib[\"tap\"].x"), None);
        // A reference that is not static could name any module: none is left out.
        for dynamic in ["decision := data[input.p]", "decision := object.get(data, \"lib\", 1)"] {
            assert_eq!(with(&format!("package cosigner.transaction\n{dynamic}")), None, "{dynamic}");
        }
    }
}
