//! Test harness: the real server on an ephemeral port, real TLS, real RSA keys generated at test
//! time, and a client that speaks the protocol as the Co-signer does.

pub mod browser;

use std::io::BufRead;
use std::path::Path;
use std::sync::OnceLock;

use axum::body::Bytes;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cosigner_guard::config::Settings;
use cosigner_guard::http_client::Target;
use cosigner_guard::keys::{GeneratedKeyPair, generate_rsa_2048};
use hyper::StatusCode;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cosigner-guard");

/// Keys shared by every server of a test binary (RSA generation is the slow part).
pub struct Keys {
    pub handler: GeneratedKeyPair,
    pub primary: GeneratedKeyPair,
    pub backup: GeneratedKeyPair,
    /// A well-formed key that no server trusts.
    pub stranger: GeneratedKeyPair,
    pub tls_cert_pem: String,
    pub tls_key_pem: String,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let tls = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("tls cert");
        Keys {
            handler: generate_rsa_2048().expect("handler key"),
            primary: generate_rsa_2048().expect("primary key"),
            backup: generate_rsa_2048().expect("backup key"),
            stranger: generate_rsa_2048().expect("stranger key"),
            tls_cert_pem: tls.cert.pem(),
            tls_key_pem: tls.signing_key.serialize_pem(),
        }
    })
}

/// What a test server is made of; `config` is TOML appended verbatim to each section.
pub struct Spec {
    pub modes: &'static str,
    pub policies: Vec<(&'static str, String)>,
    pub server_toml: String,
    pub policy_toml: String,
    /// Serve this directory instead of writing `policies`.
    pub policy_dir: Option<std::path::PathBuf>,
    /// Whole extra sections, appended to the config.
    pub extra_toml: String,
    /// The `[decision_log]` section's body (default: a file in the test directory).
    pub decision_log_toml: String,
}

impl Spec {
    /// Both modes, the given `package cosigner.transaction` and `package cosigner.config_change` bodies.
    pub fn new(transaction_rego: &str, config_change_rego: &str) -> Self {
        Self {
            modes: r#"["jwt", "json"]"#,
            policies: vec![
                ("tx.rego", format!("package cosigner.transaction\nimport rego.v1\n{transaction_rego}\n")),
                ("cc.rego", format!("package cosigner.config_change\nimport rego.v1\n{config_change_rego}\n")),
            ],
            server_toml: String::new(),
            policy_toml: String::new(),
            policy_dir: None,
            extra_toml: String::new(),
            decision_log_toml: "sink = \"file\"\npath = \"decisions.jsonl\"".to_string(),
        }
    }

    /// The repository's starter policy set, both modes.
    pub fn starter() -> Self {
        let mut spec = Self::new("", "");
        spec.policies.clear();
        spec.policy_dir = Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"));
        spec
    }

    /// Both kinds decided by the same rule body.
    pub fn both(rego: &str) -> Self {
        Self::new(rego, rego)
    }

    pub fn modes(mut self, modes: &'static str) -> Self {
        self.modes = modes;
        self
    }

    pub fn server(mut self, toml: &str) -> Self {
        self.server_toml.push_str(toml);
        self.server_toml.push('\n');
        self
    }

    pub fn decision_log(mut self, toml: &str) -> Self {
        self.decision_log_toml = toml.to_string();
        self
    }

    pub fn extra(mut self, toml: &str) -> Self {
        self.extra_toml.push_str(toml);
        self.extra_toml.push('\n');
        self
    }

    pub fn policy(mut self, toml: &str) -> Self {
        self.policy_toml.push_str(toml);
        self.policy_toml.push('\n');
        self
    }

    /// Writes the config, keys and policies into `dir` and returns the config path.
    pub fn write(&self, dir: &Path) -> std::path::PathBuf {
        let keys = keys();
        let files = [
            ("tls/cert.pem", keys.tls_cert_pem.as_str()),
            ("tls/key.pem", keys.tls_key_pem.as_str()),
            ("keys/handler.pem", keys.handler.private_pem.as_str()),
            ("keys/primary.pem", keys.primary.public_pem.as_str()),
            ("keys/backup.pem", keys.backup.public_pem.as_str()),
        ];
        for (path, contents) in files {
            write(&dir.join(path), contents);
        }
        for (path, contents) in &self.policies {
            write(&dir.join("policies").join(path), contents);
        }
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"
tls_cert = "tls/cert.pem"
tls_key = "tls/key.pem"
{server}
[protocol]
modes = {modes}
signing_key = "keys/handler.pem"
[protocol.cosigner_keys]
primary = "keys/primary.pem"
backup = "keys/backup.pem"

[policy]
dir = {dir:?}
{policy}
[admin]
listen = "127.0.0.1:0"

[decision_log]
{decision_log}

{extra}
"#,
            extra = self.extra_toml,
            decision_log = self.decision_log_toml,
            dir = self.policy_dir.as_deref().unwrap_or(Path::new("policies")).display().to_string(),
            server = self.server_toml,
            modes = self.modes,
            policy = self.policy_toml,
        );
        let path = dir.join("config.toml");
        write(&path, &config);
        path
    }
}

pub fn write(path: &Path, contents: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, contents).expect("write");
}

pub struct TestServer {
    pub target: Target,
    pub admin: std::net::SocketAddr,
    /// The Fireblocks webhook listener, when configured.
    pub webhooks: Option<std::net::SocketAddr>,
    pub dir: tempfile::TempDir,
    port: u16,
}

/// Starts the real server, exactly as `serve --config` wires it, on an ephemeral port.
pub async fn spawn(spec: Spec) -> TestServer {
    spawn_in(spec, tempfile::tempdir().expect("tempdir")).await
}

/// As [`spawn`], in a directory the caller may have prepared.
pub async fn spawn_in(spec: Spec, dir: tempfile::TempDir) -> TestServer {
    let config = spec.write(dir.path());
    spawn_config(&config, dir).await
}

/// Starts the real server on a config file already written in `dir`.
pub async fn spawn_config(config: &Path, dir: tempfile::TempDir) -> TestServer {
    let settings = Settings::load(config).expect("config loads");
    let server = cosigner_guard::app::build(settings).await.expect("server binds");
    let port = server.local_addr().expect("addr").port();
    let admin = server.admin_addr().expect("admin listener");
    let webhooks = server.webhook_addr();
    tokio::spawn(server.serve(std::future::pending()));
    let target =
        Target::new(&format!("https://localhost:{port}"), Some(keys().tls_cert_pem.as_bytes())).await.expect("target");
    TestServer { target, admin, webhooks, dir, port }
}

impl TestServer {
    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let target = Target::new(&format!("http://{}", self.admin), None).await.expect("admin target");
        let (status, body) = target.connect().await.expect("admin connect").get("/metrics").await.expect("metrics");
        assert_eq!(status, StatusCode::OK);
        String::from_utf8(body.to_vec()).expect("metrics text")
    }

    /// `GET` on the admin listener (plain HTTP on loopback); returns the status and JSON body.
    pub async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        let target = Target::new(&format!("http://{}", self.admin), None).await.expect("admin target");
        let mut connection = target.connect().await.expect("admin connect");
        let (status, body) = connection.get(path).await.expect("admin get");
        (status, serde_json::from_slice(&body).expect("admin JSON"))
    }

    pub fn target_port(&self) -> u16 {
        self.port
    }

    /// The decision-log records written so far (the default file sink).
    pub fn decision_records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("decisions.jsonl")).unwrap_or_default();
        // Only whole lines: the writer may be appending the next record while this reads.
        let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
        whole.lines().map(|line| serde_json::from_str(line).expect("a JSON record per line")).collect()
    }

    pub fn policy_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("policies")
    }

    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> (StatusCode, Bytes) {
        self.target.connect().await.expect("connect").post(path, body).await.expect("post")
    }
}

/// Signs claims as the Co-signer does: RS256 with `{"typ":"JWT","alg":"RS256"}`.
pub fn sign(payload: &Value, private_pem: &str) -> String {
    sign_with(Header::new(Algorithm::RS256), payload, &EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("key"))
}

pub fn sign_with(header: Header, payload: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, payload, key).expect("sign")
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Verifies a jwt-mode answer with the handler's public key and returns its claims.
pub fn verify_answer(body: &[u8]) -> Value {
    let key = DecodingKey::from_rsa_pem(keys().handler.public_pem.as_bytes()).expect("handler public key");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let token = std::str::from_utf8(body).expect("utf-8 answer");
    jsonwebtoken::decode::<Value>(token, &key, &validation).expect("answer signature verifies").claims
}

pub fn payload(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/payloads").join(name);
    serde_json::from_slice(&std::fs::read(path).expect("payload file")).expect("payload json")
}

/// The documented ETH transfer as a new transaction `id` of `amount` ETH (its raw transaction
/// still pays 0.01: remove `rawTx` where that matters).
pub fn eth_transfer(id: &str, amount: &str) -> Value {
    let mut tx = payload("eth_transfer.json");
    tx["txId"] = id.into();
    tx["requestId"] = id.into();
    tx["amountStr"] = amount.into();
    tx["destinations"][0]["amountNativeStr"] = amount.into();
    tx
}

/// Posts `payload` the way `mode` does and returns the decoded answer (status must be 200).
pub async fn decide(server: &TestServer, mode: &str, kind_endpoint: &str, payload: &Value) -> Value {
    let (status, body) = match mode {
        "jwt" => server.post(&format!("/v2/{kind_endpoint}"), sign(payload, &keys().primary.private_pem)).await,
        _ => server.post(&format!("/{kind_endpoint}"), serde_json::to_vec(payload).expect("json")).await,
    };
    assert_eq!(status, StatusCode::OK, "{mode} {kind_endpoint}: {}", String::from_utf8_lossy(&body));
    match mode {
        "jwt" => verify_answer(&body),
        _ => serde_json::from_slice(&body).expect("json answer"),
    }
}

/// A real `redis-server` (Debian's package) on a free loopback port, in a directory of its own,
/// without persistence; killed when dropped. Can be stopped and started again on the same port.
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let mut redis = Self { port, child: None, dir: tempfile::tempdir().expect("tempdir") };
        redis.resume();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The `[state]` section of a replica sharing this server.
    pub fn state_toml(&self) -> String {
        format!("[state]\nbackend = \"redis\"\nurl = \"{}\"\ntimeout_ms = 500", self.url())
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) and waits until it answers.
    pub fn resume(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server; .ci/run does)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let answered = redis::Client::open(self.url())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if answered.is_ok() {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running server process, killed if the test fails before stopping it.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    pub fn signal(&self, name: &str) {
        assert!(std::process::Command::new("kill").args([name, &self.0.id().to_string()]).status().unwrap().success());
    }

    pub fn wait(&mut self) -> Option<i32> {
        self.0.wait().unwrap().code()
    }
}

/// Starts the binary on `config` and returns it with its HTTPS port, read from the start-up log.
pub fn start(config: &std::path::Path) -> (Running, u16) {
    let (running, port, _) = start_with_log(config, &[]);
    (running, port)
}

/// As [`start`], with extra environment, also returning the log lines up to the listening one (included).
pub fn start_with_log(config: &std::path::Path, env: &[(&str, &str)]) -> (Running, u16, Vec<String>) {
    let mut command = std::process::Command::new(BIN);
    command.args(["--log-format", "json", "serve", "--config"]).arg(config).envs(env.iter().copied());
    start_command(command)
}

/// Starts a prepared `serve` command (JSON logs) and waits for its listening line.
pub fn start_command(mut command: std::process::Command) -> (Running, u16, Vec<String>) {
    let mut child = command.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut seen = Vec::new();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let addr = loop {
        assert!(std::time::Instant::now() < deadline, "no listening line");
        let line = lines.next().expect("server exited early").unwrap();
        seen.push(line);
        if let Ok(event) = serde_json::from_str::<serde_json::Value>(seen.last().unwrap())
            && event["message"] == "listening"
        {
            break event["addr"].as_str().unwrap().to_string();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (Running(child), addr.rsplit(':').next().unwrap().parse().unwrap(), seen)
}

pub async fn post_signed(port: u16, payload: &serde_json::Value) -> serde_json::Value {
    let target = cosigner_guard::http_client::Target::new(
        &format!("https://localhost:{port}"),
        Some(keys().tls_cert_pem.as_bytes()),
    )
    .await
    .unwrap();
    let signed = sign(payload, &keys().primary.private_pem);
    let (status, body) = target.connect().await.unwrap().post("/v2/tx_sign_request", signed).await.unwrap();
    assert_eq!(status, 200);
    verify_answer(&body)
}
