//! The map cannot drift: every top-level module of `src/` is on `ARCHITECTURE.md`'s map, every
//! module on the map exists, and every `crate::` path in a module's code names a module on a lower
//! layer (so there is no cycle between modules).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `| 3 | \`state\` | … |` rows of the map: module → layer.
fn map() -> BTreeMap<String, u32> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let layer = cells.get(1)?.parse().ok()?;
            let module = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((module.to_string(), layer))
        })
        .collect()
}

/// Every `.rs` file under `src/` with its top-level module (`src/policy/store.rs` → `policy`).
fn sources() -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = root().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let first = path.strip_prefix(&src).unwrap().components().next()?.as_os_str().to_str()?.to_string();
            let module = first.strip_suffix(".rs").unwrap_or(&first).to_string();
            (module != "lib" && module != "main").then_some((module, path))
        })
        .collect()
}

/// The code of a file: comments, string literals and its trailing `#[cfg(test)]` module dropped
/// (unit tests may reach any module; a file named `tests.rs` is all tests).
fn code(path: &Path) -> String {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text,
    };
    let bytes = text.as_bytes();
    let (mut out, mut i) = (String::with_capacity(text.len()), 0);
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |end| end + 2);
        } else if let Some(hashes) = raw_string_start(rest) {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = hashes + 2;
            i += body + rest[body..].find(&close).map_or(rest.len() - body, |end| end + close.len());
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() && rest.as_bytes()[j] != b'"' {
                j += if rest.as_bytes()[j] == b'\\' { 2 } else { 1 };
            }
            i += j + 1;
        } else if rest.starts_with("'\"'") {
            i += 3;
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `r"` or `r#"` (with that many `#`) at the start of `text`, not inside an identifier.
fn raw_string_start(text: &str) -> Option<usize> {
    let rest = text.strip_prefix('r')?;
    let hashes = rest.bytes().take_while(|b| *b == b'#').count();
    rest[hashes..].starts_with('"').then_some(hashes)
}

/// The top-level modules a piece of code names through `crate::`.
fn imports(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let preceded = code[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_');
        if preceded {
            continue; // `cosigner_guard::…` or another crate's path
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut item_start, mut end) = (0, 0, group.len());
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        end = i;
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(ident(&group[item_start..i]));
                        item_start = i + 1;
                    }
                    _ => {}
                }
            }
            found.insert(ident(&group[item_start..end]));
        } else {
            found.insert(ident(rest));
        }
    }
    // Items of `lib.rs` itself (`crate::VERSION`) belong to no layer.
    found.retain(|m| m.starts_with(|c: char| c.is_ascii_lowercase()) && m != "self");
    found
}

#[test]
fn every_module_is_on_the_map_and_the_map_names_only_modules() {
    let map = map();
    assert!(map.len() > 10, "ARCHITECTURE.md's map was read ({} rows)", map.len());
    let modules: BTreeSet<String> = sources().into_iter().map(|(module, _)| module).collect();
    let missing: Vec<&String> = modules.iter().filter(|m| !map.contains_key(*m)).collect();
    assert!(missing.is_empty(), "modules missing from ARCHITECTURE.md's map: {missing:?}");
    let stale: Vec<&String> = map.keys().filter(|m| !modules.contains(*m)).collect();
    assert!(stale.is_empty(), "modules on the map that src/ no longer has: {stale:?}");
}

#[test]
fn imports_only_go_down_the_layers() {
    let map = map();
    let mut against = Vec::new();
    for (module, path) in sources() {
        let Some(&layer) = map.get(&module) else { continue };
        for import in imports(&code(&path)) {
            if import == module {
                continue;
            }
            match map.get(&import) {
                Some(&below) if below < layer => {}
                Some(&other) => against.push(format!(
                    "{} ({module}, layer {layer}) imports {import} (layer {other})",
                    path.strip_prefix(root()).unwrap().display()
                )),
                None => against.push(format!("{}: crate::{import} is not on the map", path.display())),
            }
        }
    }
    assert!(against.is_empty(), "imports against the declared direction:\n{}", against.join("\n"));
}

/// The reader itself: paths in comments and strings do not count, grouped imports do.
#[test]
fn the_import_reader_sees_code_only() {
    let code_text = "use crate::{a::B, c, d::{e, f}};\n// crate::comment\nlet s = \"crate::string\";\nlet r = r#\"crate::raw\"#;\nx = crate::g::h();\ncosigner_guard::i::j;";
    let dir = std::env::temp_dir().join(format!("architecture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sample.rs");
    std::fs::write(&file, code_text).unwrap();
    let found: Vec<String> = imports(&code(&file)).into_iter().collect();
    assert_eq!(found, ["a", "c", "d", "g"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
