//! A real browser for the console's tests: Debian's headless Chromium, driven over the DevTools
//! protocol, each tab in its own browser context (cookies) with its own virtual WebAuthn
//! authenticator (CTAP2, discoverable credentials, user verification). Waits are on events —
//! the page's load, a DOM mutation — each bounded by a deadline that fails the test.

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any one step may take before the test fails.
const STEP: Duration = Duration::from_secs(30);

pub struct Browser {
    child: tokio::process::Child,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    events: VecDeque<Value>,
    _profile: tempfile::TempDir,
}

/// One tab: a DevTools session, and its virtual authenticator.
pub struct Tab {
    pub session: String,
    pub authenticator: String,
}

impl Browser {
    /// Starts Chromium (`CHROMIUM` or /usr/bin/chromium); `.ci/run` installs it.
    pub async fn launch() -> Self {
        Self::launch_trusting(None).await
    }

    /// As [`Browser::launch`], trusting a TLS certificate by the base64 SHA-256 of its public key
    /// (a certificate it trusts makes a secure context, where WebAuthn works; one it merely
    /// ignores errors for does not).
    pub async fn launch_trusting(spki_sha256: Option<&str>) -> Self {
        let program = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let profile = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(&program)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--remote-debugging-port=0",
                "--window-size=1000,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(spki_sha256.map(|hash| format!("--ignore-certificate-errors-spki-list={hash}")))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} ({e}): .ci/run installs Debian's chromium"));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = tokio::time::timeout(STEP, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_string();
                }
            }
            panic!("chromium exited without a DevTools endpoint")
        })
        .await
        .expect("chromium's DevTools endpoint");
        // Keep draining its stderr so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("DevTools websocket");
        Self { child, socket, next_id: 0, events: VecDeque::new(), _profile: profile }
    }

    /// A DevTools command (on a tab's session, or the browser's); its result, or a panic with the
    /// protocol's error.
    pub async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket.send(Message::text(message.to_string())).await.expect("DevTools send");
        loop {
            let message = self.receive().await;
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method}: {error}");
                }
                return message["result"].clone();
            }
            if message.get("method").is_some() {
                self.events.push_back(message);
            }
        }
    }

    async fn receive(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(STEP, self.socket.next()).await.expect("DevTools went quiet");
            match next.expect("DevTools closed").expect("DevTools read") {
                Message::Text(text) => return serde_json::from_str(&text).expect("DevTools JSON"),
                Message::Close(_) => panic!("DevTools closed"),
                _ => continue,
            }
        }
    }

    /// Waits for the event `method` on `session`.
    pub async fn event(&mut self, session: &str, method: &str) -> Value {
        let matches = |e: &Value| e["method"] == method && e["sessionId"] == session;
        if let Some(at) = self.events.iter().position(matches) {
            return self.events.remove(at).unwrap_or_default();
        }
        loop {
            let message = self.receive().await;
            if matches(&message) {
                return message;
            }
            if message.get("method").is_some() {
                self.events.push_back(message);
            }
        }
    }

    /// A new tab in a new browser context (its own cookies) with a virtual platform authenticator
    /// that holds discoverable credentials and verifies its user.
    pub async fn tab(&mut self) -> Tab {
        let context = self.call(None, "Target.createBrowserContext", json!({})).await["browserContextId"].clone();
        let target = self
            .call(None, "Target.createTarget", json!({"url": "about:blank", "browserContextId": context}))
            .await["targetId"]
            .clone();
        let session =
            self.call(None, "Target.attachToTarget", json!({"targetId": target, "flatten": true})).await["sessionId"]
                .as_str()
                .unwrap()
                .to_string();
        self.call(Some(&session), "Page.enable", json!({})).await;
        self.call(Some(&session), "WebAuthn.enable", json!({"enableUI": false})).await;
        let authenticator = self
            .call(
                Some(&session),
                "WebAuthn.addVirtualAuthenticator",
                json!({"options": {
                    "protocol": "ctap2", "ctap2Version": "ctap2_1", "transport": "internal",
                    "hasResidentKey": true, "hasUserVerification": true, "isUserVerified": true,
                    "automaticPresenceSimulation": true,
                }}),
            )
            .await["authenticatorId"]
            .as_str()
            .unwrap()
            .to_string();
        Tab { session, authenticator }
    }

    /// Opens `url` in `tab` and waits for its load event (its deferred scripts have run).
    pub async fn open(&mut self, tab: &Tab, url: &str) {
        let navigated = self.call(Some(&tab.session), "Page.navigate", json!({"url": url})).await;
        assert!(navigated.get("errorText").is_none(), "cannot open {url}: {navigated}");
        self.event(&tab.session, "Page.loadEventFired").await;
    }

    /// Evaluates `expression` in the page (awaiting a promise, as a user gesture); its value.
    pub async fn eval(&mut self, tab: &Tab, expression: &str) -> Value {
        let result = self
            .call(
                Some(&tab.session),
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true, "userGesture": true}),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!(
                "{expression}: {}",
                exception["exception"]["description"].as_str().unwrap_or(&exception.to_string())
            );
        }
        result["result"]["value"].clone()
    }

    /// Clicks the element `selector` the way a person does (it must be enabled).
    pub async fn click(&mut self, tab: &Tab, selector: &str) {
        let script = format!(
            "(() => {{ const e = document.querySelector({s}); if (!e) throw new Error('no ' + {s}); \
             if (e.disabled) throw new Error({s} + ' is disabled'); e.click(); return true; }})()",
            s = serde_json::to_string(selector).unwrap()
        );
        self.eval(tab, &script).await;
    }

    /// Waits until the element `selector` exists and its text contains `text`; that text.
    pub async fn wait_text(&mut self, tab: &Tab, selector: &str, text: &str) -> String {
        let script = format!(
            r#"new Promise((resolve, reject) => {{
                const sel = {sel}, want = {want};
                const now = () => {{ const e = document.querySelector(sel); return e && e.textContent.includes(want) ? e.textContent : null; }};
                if (now() !== null) return resolve(now());
                const seen = new MutationObserver(() => {{ const t = now(); if (t !== null) {{ seen.disconnect(); resolve(t); }} }});
                seen.observe(document, {{subtree: true, childList: true, characterData: true, attributes: true}});
                setTimeout(() => {{ seen.disconnect(); const e = document.querySelector(sel);
                    reject(new Error(`${{sel}} never said "${{want}}"; it says: ${{e ? e.textContent : "(missing)"}}`)); }}, 20000);
            }})"#,
            sel = serde_json::to_string(selector).unwrap(),
            want = serde_json::to_string(text).unwrap()
        );
        self.eval(tab, &script).await.as_str().unwrap_or_default().to_string()
    }

    /// The credentials the tab's authenticator holds (id, signCount, …).
    pub async fn credentials(&mut self, tab: &Tab) -> Vec<Value> {
        let result = self
            .call(Some(&tab.session), "WebAuthn.getCredentials", json!({"authenticatorId": tab.authenticator}))
            .await;
        result["credentials"].as_array().cloned().unwrap_or_default()
    }

    /// A PNG of the tab's page.
    pub async fn screenshot(&mut self, tab: &Tab) -> Vec<u8> {
        use base64::Engine as _;
        let shot = self.call(Some(&tab.session), "Page.captureScreenshot", json!({"format": "png"})).await;
        base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap()
    }

    pub async fn close(mut self) {
        let close = json!({"id": 0, "method": "Browser.close", "params": {}});
        let _ = self.socket.send(Message::text(close.to_string())).await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}
