//! The docs stay true: the README stays a front door (≤ 20 KB), every relative link and anchor in
//! the docs resolves, and every configuration key and CLI subcommand is documented somewhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, ARCHITECTURE.md, CHANGELOG.md, SECURITY.md and every page of docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> =
        ["README.md", "ARCHITECTURE.md", "CHANGELOG.md", "SECURITY.md"].iter().map(|p| root().join(p)).collect();
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages
}

fn all_docs() -> String {
    pages().iter().map(|p| std::fs::read_to_string(p).unwrap()).collect::<Vec<_>>().join("\n")
}

/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim_start_matches('#').strip_prefix(' ').filter(|_| l.starts_with('#')))
        .map(anchor)
        .collect()
}

/// The text outside fenced code blocks.
fn prose(text: &str) -> String {
    text.split("```").step_by(2).collect::<Vec<_>>().join("")
}

#[test]
fn the_readme_is_a_front_door() {
    let size = std::fs::metadata(root().join("README.md")).unwrap().len();
    assert!(size <= 20 * 1024, "README.md is {size} bytes: move depth to docs/");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for page in [
        "docs/operating.md",
        "docs/policies.md",
        "docs/holds.md",
        "docs/evidence.md",
        "docs/security.md",
        "docs/origin.md",
    ] {
        assert!(readme.contains(&format!("]({page})")), "the README links {page}");
    }
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = prose(&std::fs::read_to_string(&page).unwrap());
        for (at, _) in text.match_indices("](") {
            let target: String = text[at + 2..].chars().take_while(|c| *c != ')' && !c.is_whitespace()).collect();
            if target.starts_with("http:") || target.starts_with("https:") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() { page.clone() } else { page.parent().unwrap().join(path) };
            if !file.exists() {
                broken.push(format!("{}: {target} (no such file)", page.display()));
            } else if !fragment.is_empty()
                && file.extension().is_some_and(|e| e == "md")
                && !anchors(&std::fs::read_to_string(&file).unwrap()).contains(fragment)
            {
                broken.push(format!("{}: {target} (no such heading)", page.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// `section.key` for every field of the configuration's raw sections, read from `src/config/raw.rs`.
fn config_keys() -> Vec<String> {
    let source = std::fs::read_to_string(root().join("src/config/raw.rs")).unwrap();
    let block = |name: &str| -> Vec<String> {
        let start = source.find(&format!("struct {name} {{")).unwrap_or_else(|| panic!("struct {name}"));
        let body = &source[start..start + source[start..].find("\n}").unwrap()];
        body.lines()
            .skip(1)
            .filter_map(|l| {
                let l = l.trim();
                let (field, _) = l.split_once(':')?;
                // The last word before the colon: the field, whatever its visibility.
                let field = field.split_whitespace().last()?;
                (!l.starts_with("//") && !l.starts_with('#')).then(|| field.to_string())
            })
            .collect()
    };
    let sections: Vec<(String, String)> = block("RawConfig")
        .into_iter()
        .map(|section| {
            let start = source.find(&format!(" {section}: ")).unwrap();
            let ty = source[start..].split(':').nth(1).unwrap().trim();
            // An optional section (`Option<RawOrigin>`) is configured by being there.
            let ty = ty.strip_prefix("Option<").unwrap_or(ty);
            let ty: String = ty.chars().take_while(|c| c.is_alphanumeric()).collect();
            (section, ty)
        })
        .collect();
    sections.iter().flat_map(|(section, ty)| block(ty).into_iter().map(move |key| format!("{section}.{key}"))).collect()
}

#[test]
fn every_config_key_is_documented() {
    let docs = all_docs();
    let keys = config_keys();
    assert!(keys.len() > 40, "the configuration's keys were read ({})", keys.len());
    let missing: Vec<&String> = keys.iter().filter(|key| !docs.contains(key.as_str())).collect();
    assert!(missing.is_empty(), "config keys no page mentions: {missing:?}");
}

#[test]
fn every_cli_subcommand_is_documented() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cosigner-guard")).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("  ").filter(|rest| !rest.starts_with(' ')))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() > 8, "{help}");
    let docs = all_docs();
    let missing: Vec<&&str> = commands.iter().filter(|c| !docs.contains(&format!("cosigner-guard {c}"))).collect();
    assert!(missing.is_empty(), "subcommands no page mentions as `cosigner-guard <command>`: {missing:?}");
}

/// The counts the policy page quotes are the suites' own: a stale one fails here.
#[test]
fn the_quoted_suite_counts_are_current() {
    let passed = |dir: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cosigner-guard"))
            .args(["test", dir])
            .current_dir(root())
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines().last().unwrap().split_whitespace().next().unwrap().to_string()
    };
    let page = std::fs::read_to_string(root().join("docs/policies.md")).unwrap();
    let starter = passed("policies/");
    assert!(
        page.contains(&format!("\n{starter} passed, 0 failed, 0 skipped\n")),
        "the starter set has {starter} tests"
    );
    let treasury = passed("examples/treasury/policies");
    assert!(page.contains(&format!("({treasury} tests, each clause")), "the treasury set has {treasury} tests");
}
