//! Each resolution error names the key at fault: a working project (`init`) with one setting
//! changed at a time.

use super::*;

/// A working project, and its config text.
fn project() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::dev::init(dir.path()).unwrap();
    let text = std::fs::read_to_string(config).unwrap();
    (dir, text)
}

/// Loads `text` as the project's config.
fn load(dir: &tempfile::TempDir, text: &str) -> Result<Settings, ConfigError> {
    let path = dir.path().join("case.toml");
    std::fs::write(&path, text).unwrap();
    Settings::load(&path)
}

/// Replaces `line` of the config (the first one that starts with it) by `with`.
fn replaced(text: &str, line: &str, with: &str) -> String {
    let at = text.find(line).unwrap_or_else(|| panic!("no line {line:?}"));
    let end = at + text[at..].find('\n').unwrap();
    format!("{}{with}{}", &text[..at], &text[end..])
}

#[test]
fn the_project_init_writes_loads() {
    let (dir, text) = project();
    let settings = load(&dir, &text).unwrap();
    assert_eq!(settings.holds.approvers.len(), 3);
    assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
}

#[test]
fn every_resolution_error_names_its_key() {
    let (dir, base) = project();
    let appended = |extra: &str| format!("{base}\n{extra}\n");
    let cases: Vec<(String, &str)> = vec![
        (replaced(&base, "listen = \"127.0.0.1:8443\"", "listen = \"nowhere\""), "server.listen"),
        (replaced(&base, "tls_key = \"tls/key.pem\"", ""), "server.tls_cert"),
        (
            replaced(&base, "tls_cert = \"tls/cert.pem\"", "tls_cert = \"tls/missing.pem\""),
            "server.tls_cert / server.tls_key",
        ),
        (replaced(&base, "[server]", "[server]\ninsecure_http = true"), "server.insecure_http"),
        (replaced(&base, "[server]", "[server]\npath_prefix = \"nope\""), "server.path_prefix"),
        (replaced(&base, "[server]", "[server]\nmax_body_bytes = 0"), "server.max_body_bytes"),
        (replaced(&base, "[server]", "[server]\nread_timeout_ms = 0"), "server.read_timeout_ms"),
        (replaced(&base, "[server]", "[server]\nmax_in_flight = 0"), "server.max_in_flight"),
        (replaced(&base, "modes = [\"jwt\", \"json\"]", "modes = []"), "protocol.modes"),
        (replaced(&base, "signing_key = \"keys/callback_private.pem\"", ""), "protocol.signing_key"),
        (
            replaced(
                &base,
                "signing_key = \"keys/callback_private.pem\"",
                "signing_key = \"keys/cosigner_public.pem\"",
            ),
            "protocol.signing_key",
        ),
        (replaced(&base, "demo = \"keys/cosigner_public.pem\"", ""), "protocol.cosigner_keys"),
        (
            replaced(&base, "demo = \"keys/cosigner_public.pem\"", "demo = \"keys/none.pem\""),
            "protocol.cosigner_keys.demo",
        ),
        (replaced(&base, "[policy]", "[policy]\neval_timeout_ms = 0"), "policy.eval_timeout_ms"),
        (replaced(&base, "[policy]", "[policy]\neval_timeout_ms = 30000"), "policy.eval_timeout_ms"),
        (replaced(&base, "[policy]", "[policy]\neval_threads = 0"), "policy.eval_threads"),
        (
            replaced(&base, "[policy]", "[policy]\ntransaction_entrypoint = \"cosigner.x\""),
            "policy.transaction_entrypoint",
        ),
        (replaced(&base, "listen = \"127.0.0.1:9090\"", "listen = \"admin\""), "admin.listen"),
        (replaced(&base, "listen = \"127.0.0.1:9090\"", "listen = \"0.0.0.0:9090\""), "admin.listen"),
        (
            replaced(&base, "listen = \"127.0.0.1:9090\"", "listen = \"127.0.0.1:9090\"\ntls_cert = \"tls/cert.pem\""),
            "admin.tls_cert",
        ),
        (appended("[reload]\ndebounce_ms = 0"), "reload.debounce_ms"),
        (appended("[reload]\ntimeout_ms = 0"), "reload.timeout_ms"),
        (appended("[decision_log]\nsink = \"file\""), "decision_log.path"),
        (appended("[decision_log]\npath = \"d.jsonl\""), "decision_log.path"),
        (appended("[decision_log]\nsink = \"syslog\""), "decision_log.sink"),
        (
            appended("[decision_log]\nsink = \"file\"\npath = \"d.jsonl\"\nredact = [\"request\"]"),
            "decision_log.redact",
        ),
        (appended("[state]\nurl = \"redis://localhost\""), "state.url"),
        (appended("[state]\nbackend = \"redis\""), "state.url"),
        (appended("[state]\nbackend = \"redis\"\nurl = \"http://x\""), "state.url"),
        (appended("[state]\nbackend = \"redis\"\nurl = \"redis://x\"\npath = \"s\""), "state.path"),
        (appended("[state]\nbackend = \"redis\"\nurl = \"redis://x\"\nkey_prefix = \"{a}\""), "state.key_prefix"),
        (appended("[state]\nbackend = \"memcached\""), "state.backend"),
        (appended("[state]\ntimeout_ms = 0"), "state.timeout_ms"),
        (replaced(&base, "[holds.approvers]", "[holds]\nttl = \"soon\"\n\n[holds.approvers]"), "holds.ttl"),
        (replaced(&base, "[holds.approvers]", "[holds]\nttl = \"30d\"\n\n[holds.approvers]"), "holds.ttl"),
        (
            replaced(&base, "[holds.approvers]", "[holds]\nnotify_url = \"ftp://x\"\n\n[holds.approvers]"),
            "holds.notify_url",
        ),
        (
            replaced(&base, "alice = \"approvers/alice_public.pem\"", "\"a b\" = \"approvers/alice_public.pem\""),
            "holds.approvers",
        ),
        (
            replaced(&base, "alice = \"approvers/alice_public.pem\"", "alice = \"keys/callback_public.pem\""),
            "holds.approvers.alice",
        ),
        (appended("[fireblocks_webhooks]\nlisten = \"127.0.0.1:0\""), "fireblocks_webhooks.jwks"),
        (appended("[fireblocks_webhooks]\njwks = \"http://x/jwks.json\""), "fireblocks_webhooks.jwks"),
        (appended("[fireblocks_webhooks]\njwks = \"missing.json\""), "fireblocks_webhooks.jwks"),
        (appended("[fireblocks_webhooks]\npath = \"hook\"\njwks = \"j.json\""), "fireblocks_webhooks.path"),
        (appended("[fireblocks_webhooks]\nlisten = \"nowhere\""), "fireblocks_webhooks.listen"),
        (
            appended("[fireblocks_webhooks]\nlegacy_public_key = \"keys/callback_private.pem\""),
            "fireblocks_webhooks.legacy_public_key",
        ),
        (appended("[origin]\ncarrier = \"memo\"\n[origin.keys]\nb = \"keys/cosigner_public.pem\""), "origin.carrier"),
        (appended("[origin]\nmax_age = \"31d\"\n[origin.keys]\nb = \"keys/cosigner_public.pem\""), "origin.max_age"),
        (appended("[origin]\ncarrier = \"note\""), "origin.keys"),
        (appended("[origin.keys]\nb = \"keys/callback_private.pem\""), "origin.keys.b"),
    ];
    for (text, key) in cases {
        match load(&dir, &text) {
            Err(ConfigError::Key { key: got, message }) => {
                assert!(got.starts_with(key), "expected {key}, got {got}: {message}\n{text}")
            }
            other => panic!("expected an error naming {key}, got {other:?}\n{text}"),
        }
    }
}

/// `[origin]` with a backend's RSA key and a carrier in `extraParameters`; a max_age shorter than
/// the holds' ttl is warned about.
#[test]
fn the_origin_section_loads_its_keys_and_carrier() {
    let (dir, base) = project();
    let text = format!(
        "{base}\n[origin]\ncarrier = \"extraParameters.origin\"\nmax_age = \"10m\"\n[origin.keys]\nbackend = \"keys/cosigner_public.pem\"\n"
    );
    let settings = load(&dir, &text).unwrap();
    let origin = settings.origin.unwrap();
    assert_eq!(origin.carrier, crate::origin::Carrier::ExtraParameter("origin".into()));
    assert_eq!(origin.keys[0].alg, crate::origin::Alg::Rs256);
    assert!(settings.warnings.iter().any(|w| w.contains("origin.max_age")), "{:?}", settings.warnings);
}

#[test]
fn a_file_that_is_not_toml_or_has_an_unknown_key_is_a_parse_error_naming_the_file() {
    let (dir, base) = project();
    for text in ["[server", &format!("{base}\n[state]\nbakend = \"redis\"")] {
        match load(&dir, text) {
            Err(ConfigError::Parse { path, .. }) => assert!(path.ends_with("case.toml")),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }
}

#[test]
fn the_console_section_is_checked_before_anything_is_served() {
    let (dir, base) = project();
    let settings = load(&dir, &base).unwrap();
    let console = settings.console.expect("the development project has the console on");
    assert_eq!((console.origin, console.rp_id, console.session_ttl), (None, None, Duration::from_secs(900)));
    let with = |lines: &str| replaced(&base, "enabled = true", &format!("enabled = true\n{lines}"));
    let cases = [
        (with("origin = \"ftp://approvals.example.com\""), "console.origin"),
        (with("origin = \"http://approvals.example.com\""), "console.origin"),
        (with("origin = \"https://approvals.example.com/console\""), "console.origin"),
        (with("session_ttl = \"0s\""), "console.session_ttl"),
        (with("session_ttl = \"13h\""), "console.session_ttl"),
        (replaced(&base, "[admin]", "[admin]\nenabled = false"), "console.enabled"),
        (
            replaced(&base, "listen = \"127.0.0.1:9090\"", "listen = \"0.0.0.0:9090\"\nallow_plaintext = true"),
            "console.enabled",
        ),
    ];
    for (text, key) in cases {
        match load(&dir, &text) {
            Err(ConfigError::Key { key: named, .. }) => assert_eq!(named, key, "{text}"),
            other => panic!("{key}: expected an error, got {:?}", other.map(|s| s.console)),
        }
    }
    let https = load(&dir, &with("origin = \"https://approvals.example.com:9090\"\nrp_id = \"example.com\"")).unwrap();
    assert_eq!(https.console.unwrap().rp_id.as_deref(), Some("example.com"));
}
