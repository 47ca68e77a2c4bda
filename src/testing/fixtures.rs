//! Fixture files (`*_test.yaml`): Co-signer requests with the decision a policy set must give them.
//! The schema is strict: an unknown key is an error, never a silently ignored typo.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::decision::Action;
use crate::envelope::Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FixtureKind {
    #[default]
    Transaction,
    ConfigChange,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureFile {
    #[serde(default)]
    pub kind: FixtureKind,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// Overrides the file's kind.
    pub kind: Option<FixtureKind>,
    /// A payload file (relative to the YAML file) or an inline mapping.
    pub request: Option<RequestSpec>,
    /// A signed request instead: the compact JWT in a file, verified with a public key file.
    pub jwt: Option<JwtSpec>,
    /// Merged over the payload (JSON merge patch: objects merge, `null` removes).
    pub patch: Option<Value>,
    /// The request's `received_at` (RFC 3339), for time rules.
    pub now: Option<String>,
    /// The `context` for a `request:` case (a `jwt:` case gets it from the envelope).
    pub context: Option<ContextSpec>,
    /// Events in the state store before the case's first request (`velocity.*` limits).
    #[serde(default)]
    pub history: Vec<HistoryEvent>,
    /// The request's transaction already held, in this state (a single-request case).
    pub hold: Option<HoldSpec>,
    /// State reads as a decision recorded them (a case made by `fixture --from-log`): the policy's
    /// `velocity.*` reads are served from these, and a read not among them fails. Instead of
    /// `history`, for a single request.
    #[serde(default)]
    pub state: Vec<crate::policy::VelocityRead>,
    /// Requests decided one after another against the same store, each a new transaction (fresh
    /// `requestId`/`txId`) unless its patch sets them. Instead of `expect`.
    pub steps: Option<Vec<Step>>,
    pub expect: Option<Expect>,
    /// JSON pointers into the request of fields the Co-signer may leave out, whose absence the
    /// policy may accept (`/rawTx` without the workspace setting): `test --mutate` does not remove
    /// them or anything under them (it still retypes them).
    #[serde(default)]
    pub may_omit: Vec<String>,
}

/// An approved event already recorded: what `velocity.*` reads count.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryEvent {
    pub key: String,
    /// A decimal string.
    pub amount: String,
    /// RFC 3339.
    pub at: String,
}

/// A hold on the case's transaction, as approvers left it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldSpec {
    pub status: crate::holds::Status,
    /// Approvals required (default 2).
    pub required: Option<u32>,
    /// The approvers who approved.
    #[serde(default)]
    pub approvals: Vec<String>,
    #[serde(default)]
    pub rejections: Vec<RejectionSpec>,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectionSpec {
    pub approver: String,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: Option<String>,
    /// Merged over the case's request (after the case's own patch).
    pub patch: Option<Value>,
    /// The request's `received_at` (RFC 3339); the case's `now` by default.
    pub now: Option<String>,
    /// Sends this many such requests, each a new transaction (default 1).
    pub repeat: Option<u32>,
    pub expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RequestSpec {
    File(String),
    Inline(Map<String, Value>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSpec {
    /// File holding the compact JWT, relative to the YAML file.
    pub token: String,
    /// The Co-signer public key (PEM) that must verify it, relative to the YAML file.
    pub key: String,
    /// The name the key has in `input.context.cosigner_key` (default `fixture`).
    pub key_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextSpec {
    pub mode: Option<Mode>,
    pub cosigner_key: Option<String>,
    /// `input.context.origin` as the case states it (members left out take their defaults);
    /// a `jti` in its claims is bound and checked for reuse as on the server.
    pub origin: Option<crate::origin::OriginView>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub action: Action,
    /// A substring the decision's reason must contain.
    pub reason: Option<String>,
}

/// A fixture file read and parsed, with where it came from.
#[derive(Debug)]
pub struct Fixtures {
    pub path: PathBuf,
    pub file: FixtureFile,
    /// The file's text, to say on which line a case starts.
    text: String,
}

impl Fixtures {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file = yaml_serde::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self { path: path.to_path_buf(), file, text })
    }

    /// `file:line` of the case named `name` (its `- name:` line), or the file alone.
    pub fn location_of(&self, name: &str) -> String {
        let line = self.text.lines().position(|line| {
            let Some(rest) = line.trim_start().strip_prefix("- name:") else { return false };
            let rest = rest.trim();
            rest == name || rest.trim_matches(|c| c == '"' || c == '\'') == name
        });
        match line {
            Some(index) => format!("{}:{}", self.path.display(), index + 1),
            None => self.path.display().to_string(),
        }
    }

    /// A path written in the file, relative to the file.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).join(relative)
    }
}

/// Every `*_test.yaml` file under `dir` (hidden entries skipped), sorted.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if name.ends_with("_test.yaml") || name.ends_with("_test.yml") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}
