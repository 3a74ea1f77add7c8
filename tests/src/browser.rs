//! A headless Chromium driven over the DevTools protocol (a WebSocket), enough to fill a
//! form, click, and read the page: `navigate`, `eval` (awaits promises) and `wait_until`.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::wait_for;

/// The Chromium binary, if installed.
pub fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A running headless Chromium with one page; killed when dropped.
pub struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Browser {
    /// Starts `binary` with its profile in `profile` and attaches to its first page.
    pub fn launch(binary: &Path, profile: &Path) -> Browser {
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        // Chromium prints "DevTools listening on ws://127.0.0.1:PORT/…" on stderr; keep
        // draining it afterwards so that it never blocks on a full pipe.
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(1);
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line[at..].trim().to_owned());
                    }
                }
            }
        });
        let browser_ws = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium prints its DevTools address");
        let port = browser_ws
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let page = wait_for("chromium's first page", Duration::from_secs(30), || {
            let mut resp = ureq::get(&format!("http://{port}/json/list")).call().ok()?;
            let list: Value = resp.body_mut().read_json().ok()?;
            list.as_array()?
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .map(str::to_owned)
        });
        let (ws, _) = tungstenite::connect(page.as_str()).expect("the page's DevTools socket");
        let mut b = Browser {
            child,
            ws,
            next_id: 1,
        };
        b.call("Page.enable", json!({}));
        b
    }

    /// One DevTools call; its result (panics on a protocol error).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let v = self.call_raw(method, params);
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    /// One DevTools call; the whole answer, a protocol error included (a navigation ends an
    /// awaited evaluation with one).
    pub fn call_raw(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::text(msg)).expect("DevTools accepts");
        loop {
            let m = self.ws.read().expect("DevTools answers");
            let Message::Text(text) = m else { continue };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    }

    /// Opens `url` in the page.
    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
    }

    /// Evaluates `expression` in the page (awaiting a promise); its value as JSON.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
        );
        assert!(
            r.get("exceptionDetails").is_none(),
            "{expression} threw: {r}"
        );
        r["result"]["value"].clone()
    }

    /// With `SPOTCHECK_SCREENSHOTS=DIR` set, saves the page as `DIR/{name}.png` (to look at
    /// what a test saw); otherwise does nothing.
    pub fn screenshot(&mut self, name: &str) {
        let Some(dir) = std::env::var_os("SPOTCHECK_SCREENSHOTS") else {
            return;
        };
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .expect("DevTools sends base64");
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("the screenshot is written");
    }

    /// Polls `expression` until it is `true`, or panics after `timeout` naming `what`.
    pub fn wait_until(&mut self, what: &str, expression: &str, timeout: Duration) {
        // While a page loads, an evaluation may fail (no context yet): that is "not yet".
        wait_for(what, timeout, || {
            let v = self.call_raw(
                "Runtime.evaluate",
                json!({"expression": format!("!!({expression})"), "returnByValue": true}),
            );
            (v["result"]["result"]["value"] == Value::Bool(true)).then_some(())
        });
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
