//! Debian's headless Chromium, driven through the DevTools protocol (a
//! WebSocket to the page): navigate, run a line of JavaScript, read the
//! page's text, take screenshots.

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::process::Process;
use crate::wait;

pub struct Chromium {
    _process: Process,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Chromium {
    /// Start a browser with its own profile in `dir` and attach to its page.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile)?;
        let mut command = Command::new("chromium");
        // As root Chromium runs only without its sandbox.
        command.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1100,700",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            // No connections of its own: the machine's network is closed,
            // and each refused one slows the start.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
        ]);
        command.arg(format!("--user-data-dir={}", profile.display()));
        command.arg("about:blank");
        let process = Process::spawn("chromium", command, dir.join("chromium.out"))?;
        let port: u16 = wait::until("chromium's DevTools port", || {
            wait::read(&profile.join("DevToolsActivePort"))
                .lines()
                .next()?
                .parse()
                .ok()
        })
        .map_err(|e| anyhow::anyhow!("{e}; chromium printed:\n{}", process.output()))?;
        let mut list = crate::web::Client {
            addr: ([127, 0, 0, 1], port).into(),
            cookies: Default::default(),
        };
        let url = wait::until("chromium's page target", || {
            let targets: Value = serde_json::from_str(&list.get("/json/list").ok()?.body).ok()?;
            targets.as_array()?.iter().find(|t| t["type"] == "page")?["webSocketDebuggerUrl"]
                .as_str()
                .map(str::to_string)
        })?;
        let (ws, _) = tungstenite::connect(url.as_str())?;
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(wait::DEADLINE))?;
        }
        Ok(Chromium {
            _process: process,
            ws,
            next_id: 1,
        })
    }

    /// One DevTools command and its result (events in between are skipped).
    pub fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"id": id, "method": method, "params": params});
        self.ws.send(Message::text(request.to_string()))?;
        loop {
            let Message::Text(text) = self.ws.read()? else {
                continue;
            };
            let reply: Value = serde_json::from_str(text.as_str())?;
            if reply["id"] != id {
                continue;
            }
            if let Some(error) = reply.get("error") {
                anyhow::bail!("{method}: {error}");
            }
            return Ok(reply["result"].clone());
        }
    }

    /// The value of a JavaScript expression.
    pub fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        )?;
        if let Some(e) = result.get("exceptionDetails") {
            anyhow::bail!("{expression}: {e}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Load `url` and wait until the page at `path` has loaded.
    pub fn open(&mut self, url: &str, path: &str) -> anyhow::Result<()> {
        self.call("Page.navigate", json!({ "url": url }))?;
        self.wait_page(path)
    }

    /// Wait until the document at `path` (its pathname) has loaded.
    pub fn wait_page(&mut self, path: &str) -> anyhow::Result<()> {
        let check = format!(
            "document.readyState === 'complete' && location.pathname === {}",
            json!(path)
        );
        let mut last = String::new();
        wait::until(&format!("the page {path}"), || {
            match self.eval(&check) {
                Ok(Value::Bool(true)) => return Some(()),
                Ok(_) => {}
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
            None
        })
        .map_err(|e| anyhow::anyhow!("{e} {last}"))
    }

    /// The page's visible text.
    pub fn text(&mut self) -> anyhow::Result<String> {
        Ok(self
            .eval("document.body.innerText")?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Wait until the page's text contains `text`.
    pub fn wait_text(&mut self, text: &str) -> anyhow::Result<String> {
        let mut last = String::new();
        wait::until(&format!("{text:?} on the page"), || {
            last = self.text().unwrap_or_default();
            last.contains(text).then(|| last.clone())
        })
        .map_err(|e| anyhow::anyhow!("{e}; the page shows:\n{last}"))
    }

    /// Save a PNG of the page.
    pub fn screenshot(&mut self, path: &Path) -> anyhow::Result<()> {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}))?;
        let data = shot["data"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no screenshot data"))?;
        let png = base64::engine::general_purpose::STANDARD.decode(data)?;
        anyhow::ensure!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png)?;
        Ok(())
    }
}
