//! Headless Chromium (Debian's `chromium`, which `scripts/setup` installs)
//! driven over the DevTools protocol: open a page, run JavaScript in it,
//! wait for what it shows, and write screenshots. One page per browser;
//! the browser dies with this value.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::stream::MaybeTlsStream;
use tokio_tungstenite::tungstenite::{Message, WebSocket};

/// A phone's screen: what the console must be usable on.
pub const PHONE: (u32, u32) = (390, 844);

pub struct Browser {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

/// Where tests write what a person would look at: `target/test-output/`.
pub fn test_output_dir(name: &str) -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let dir = target.join("test-output").join(name);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub fn chromium_path() -> PathBuf {
    std::env::var_os("ECS_E2E_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

impl Browser {
    /// Starts Chromium with a fresh profile and one blank page of
    /// `width` × `height` CSS pixels, as a touch screen, able to reach only
    /// `hosts` (IP addresses of this host).
    pub fn start(width: u32, height: u32, hosts: &[&str]) -> Result<Self> {
        let chromium = chromium_path();
        if !chromium.exists() {
            bail!(
                "Chromium is not installed at {} (run scripts/setup)",
                chromium.display()
            );
        }
        let profile = tempfile::tempdir()?;
        let mut child = Command::new(&chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--metrics-recording-only",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            // Nothing resolves but the hosts named: the browser reaches
            // them and never the internet.
            .arg(format!(
                "--host-resolver-rules=MAP * ~NOTFOUND{}",
                hosts
                    .iter()
                    .map(|h| format!(", EXCLUDE {h}"))
                    .collect::<String>()
            ))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting chromium")?;
        let stderr = child.stderr.take().context("chromium's stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keep reading (and dropping) its log so it never blocks on a
            // full pipe.
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(url) = line.strip_prefix("DevTools listening on ") {
                        let _ = tx.send(url.trim().to_owned());
                        sent = true;
                    }
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                bail!("chromium did not open its DevTools port within 60 s");
            }
        };
        let (socket, _) = tokio_tungstenite::tungstenite::connect(url.as_str())
            .with_context(|| format!("connecting to {url}"))?;
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        }
        let mut browser = Self {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}))?;
        let target_id = target["targetId"]
            .as_str()
            .context("no targetId")?
            .to_owned();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        )?;
        browser.session = attached["sessionId"]
            .as_str()
            .context("no sessionId")?
            .to_owned();
        browser.call("Page.enable", json!({}))?;
        browser.call("Runtime.enable", json!({}))?;
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": true}),
        )?;
        Ok(browser)
    }

    /// Sends a DevTools command (to the page once one is attached) and
    /// returns its result, skipping the events that arrive meanwhile.
    fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .with_context(|| format!("sending {method}"))?;
        loop {
            let frame = self
                .socket
                .read()
                .with_context(|| format!("waiting for {method}"))?;
            let Message::Text(text) = frame else {
                continue;
            };
            let answer: Value = serde_json::from_str(text.as_str())?;
            if answer["id"] != json!(id) {
                continue;
            }
            if let Some(error) = answer.get("error") {
                bail!("{method}: {error}");
            }
            return Ok(answer["result"].clone());
        }
    }

    /// Opens `url` and waits for its document to have loaded.
    pub fn open(&mut self, url: &str) -> Result<()> {
        self.call("Page.navigate", json!({"url": url}))?;
        // Until the navigation commits, the document is still the old one.
        self.wait_for(&format!("{url} to load"), Duration::from_secs(30), || {
            "location.href !== 'about:blank' && document.readyState === 'complete'".to_owned()
        })?;
        Ok(())
    }

    /// The value of a JavaScript expression (awaited when a promise).
    pub fn eval(&mut self, expression: &str) -> Result<Value> {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
        )?;
        if let Some(exception) = result.get("exceptionDetails") {
            bail!("{expression}: {exception}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits until the expression `condition()` builds is true. An
    /// expression that throws (an element not drawn yet) counts as false;
    /// the last error is in the timeout's message.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        condition: impl Fn() -> String,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last_error = String::new();
        loop {
            match self.eval(&condition()) {
                Ok(Value::Bool(true)) => return Ok(()),
                Ok(_) => {}
                Err(e) => last_error = e.to_string(),
            }
            if Instant::now() > deadline {
                let text = self.eval("document.body ? document.body.innerText : ''")?;
                return Err(anyhow!(
                    "timed out after {timeout:?} waiting for {what} (last error: {last_error}); the page shows:\n{}",
                    text.as_str().unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The page's visible text.
    pub fn text(&mut self) -> Result<String> {
        Ok(self
            .eval("document.body.innerText")?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Writes a PNG of the whole page to `path`.
    pub fn screenshot(&mut self, path: &Path) -> Result<()> {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        )?;
        let data = shot["data"].as_str().context("no screenshot data")?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(data)?;
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
