//! A policy set as read from disk: its `.rego` modules and `data.json`/`data.yaml` documents,
//! with the revision that names this exact content.

use regorus::Value;
use std::path::{Path, PathBuf};

use super::snapshot::LoadError;

/// The files of a policy set as read from disk, with the set's revision. Reading is cheap; a reload
/// whose revision equals the active one stops here.
pub struct PolicySource {
    pub(super) files: Vec<(PathBuf, String)>,
    pub(super) dir: PathBuf,
    /// SHA-256 over the sorted relative paths and contents of every file in the set.
    pub revision: String,
}

impl PolicySource {
    pub fn read(dir: &Path) -> Result<Self, LoadError> {
        let mut paths = Vec::new();
        collect_files(dir, dir, &mut paths)?;
        paths.sort();
        if !paths.iter().any(|rel| matches!(role(rel), Some(FileRole::Policy))) {
            return Err(LoadError::Empty(dir.to_path_buf()));
        }
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut files = Vec::with_capacity(paths.len());
        for rel in paths {
            let path = dir.join(&rel);
            let text = std::fs::read_to_string(&path).map_err(|cause| LoadError::Io { path, cause })?;
            digest.update(rel.to_string_lossy().as_bytes());
            digest.update(&[0]);
            digest.update(text.as_bytes());
            digest.update(&[0]);
            files.push((rel, text));
        }
        let revision = crate::keys::hex(digest.finish().as_ref());
        Ok(Self { files, dir: dir.to_path_buf(), revision })
    }

    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// The set's data document, every data file nested at its directory's path and merged (what
    /// the engine holds as `data`, rules aside).
    pub fn data(&self) -> Result<serde_json::Value, String> {
        fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
            match (into, from) {
                (serde_json::Value::Object(into), serde_json::Value::Object(from)) => {
                    for (key, value) in from {
                        match into.get_mut(&key) {
                            Some(existing) => merge(existing, value),
                            None => drop(into.insert(key, value)),
                        }
                    }
                }
                (into, from) => *into = from,
            }
        }
        let mut data = serde_json::json!({});
        for (rel, text) in self.files.iter().filter(|(rel, _)| matches!(role(rel), Some(FileRole::Data))) {
            let value = parse_data(rel, text).map_err(|e| format!("{}: {e}", rel.display()))?;
            merge(&mut data, serde_json::to_value(&value).map_err(|e| e.to_string())?);
        }
        Ok(data)
    }

    /// The `.rego` files of the set: full path and text.
    pub fn policies(&self) -> impl Iterator<Item = (PathBuf, &str)> {
        self.files
            .iter()
            .filter(|(rel, _)| matches!(role(rel), Some(FileRole::Policy)))
            .map(|(rel, text)| (self.dir.join(rel), text.as_str()))
    }
}

/// A file of the set: `.rego` modules, and `data.json`/`data.yaml` documents (OPA's bundle convention).
pub(super) enum FileRole {
    Policy,
    Data,
}

pub(super) fn role(path: &Path) -> Option<FileRole> {
    let name = path.file_name()?.to_str()?;
    if name.ends_with(".rego") {
        Some(FileRole::Policy)
    } else if matches!(name, "data.json" | "data.yaml" | "data.yml") {
        Some(FileRole::Data)
    } else {
        None
    }
}

/// Parses a data file and nests it at its directory's path: `limits/data.json` → `data.limits`.
pub(super) fn parse_data(rel: &Path, text: &str) -> Result<Value, String> {
    let is_json = rel.extension().is_some_and(|ext| ext == "json");
    let mut value =
        if is_json { Value::from_json_str(text) } else { Value::from_yaml_str(text) }.map_err(|e| e.to_string())?;
    let dirs: Vec<String> = rel
        .parent()
        .into_iter()
        .flat_map(Path::components)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if dirs.is_empty() && !matches!(value, Value::Object(_)) {
        return Err("a data file at the root of the policy directory must hold an object".into());
    }
    for dir in dirs.iter().rev() {
        let mut parent = Value::new_object();
        parent.as_object_mut().map_err(|e| e.to_string())?.insert(Value::from(dir.as_str()), value);
        value = parent;
    }
    Ok(value)
}

/// Relative paths of every policy or data file under `dir`, skipping hidden entries.
pub(super) fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |cause| LoadError::Io { path: dir.to_path_buf(), cause };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follow symlinks, as ConfigMap mounts and deploy tools use them.
        let meta = std::fs::metadata(&path).map_err(|cause| LoadError::Io { path: path.clone(), cause })?;
        if meta.is_dir() {
            collect_files(root, &path, out)?;
        } else if role(&path).is_some() {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}
