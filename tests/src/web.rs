//! The log viewer, imspector-web, run as its own binary, and a small HTTP/1.1
//! client that keeps cookies the way a browser does, for its tests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Process;
use crate::wait;

pub struct Web {
    pub process: Process,
    pub addr: SocketAddr,
    pub audit: PathBuf,
}

impl Web {
    /// Run `imspector-web -c DIR/web.conf` with `config` plus a free loopback
    /// port, its users file `users` and its audit log in `dir`.
    pub fn start(binary: &Path, dir: &Path, config: &str, users: &Path) -> anyhow::Result<Self> {
        let audit = dir.join("audit.log");
        let conf = dir.join("web.conf");
        std::fs::write(
            &conf,
            format!(
                "{config}\nweb_listen=127.0.0.1:0\nweb_users_filename={}\nweb_audit_filename={}\n",
                users.display(),
                audit.display()
            ),
        )?;
        let mut command = Command::new(binary);
        command.arg("-c").arg(&conf);
        let process = Process::spawn("imspector-web", command, dir.join("web.out"))?;
        let addr = wait::until("imspector-web to listen", || {
            let out = process.output();
            let line = out.lines().find(|l| l.contains("listening on "))?;
            line.rsplit(' ').next()?.parse().ok()
        })
        .map_err(|e| anyhow::anyhow!("{e}; imspector-web printed:\n{}", process.output()))?;
        Ok(Web {
            process,
            addr,
            audit,
        })
    }

    pub fn client(&self) -> Client {
        Client {
            addr: self.addr,
            cookies: HashMap::new(),
        }
    }

    /// The audit log's records as `(user, action, what)`.
    pub fn audit_records(&self) -> Vec<(String, String, String)> {
        wait::read(&self.audit)
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(5, ',');
                let _time = f.next()?;
                let user = f.next()?.to_string();
                let _client = f.next()?;
                Some((user, f.next()?.to_string(), f.next()?.to_string()))
            })
            .collect()
    }
}

/// Run `imspector-web -c conf` with `config` written to `conf`, which must
/// refuse to start: what it said on standard error.
pub fn refused(binary: &Path, conf: &Path, config: &str) -> String {
    std::fs::write(conf, config).expect("writing the viewer's configuration");
    let out = Command::new(binary)
        .arg("-c")
        .arg(conf)
        .output()
        .expect("running imspector-web");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{said}");
    said
}

/// Add a user with `imspector-web passwd` (the password on standard input).
pub fn add_user(
    binary: &Path,
    file: &Path,
    name: &str,
    password: &str,
    extra: &[&str],
) -> anyhow::Result<()> {
    use std::process::Stdio;
    let mut child = Command::new(binary)
        .arg("passwd")
        .arg(file)
        .arg(name)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("a piped stdin");
    stdin.write_all(format!("{password}\n").as_bytes())?;
    drop(stdin);
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "passwd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `<input name="NAME" value="...">` on the page.
    pub fn input_value(&self, name: &str) -> Option<String> {
        let at = self.body.find(&format!("name=\"{name}\" value=\""))?;
        let rest = &self.body[at..];
        let start = rest.find("value=\"")? + 7;
        let end = rest[start..].find('"')?;
        Some(rest[start..start + end].to_string())
    }
}

pub struct Client {
    pub addr: SocketAddr,
    pub cookies: HashMap<String, String>,
}

impl Client {
    fn send(
        &mut self,
        method: &str,
        target: &str,
        body: Option<&str>,
    ) -> anyhow::Result<TcpStream> {
        let mut stream = TcpStream::connect(self.addr)?;
        stream.set_read_timeout(Some(wait::DEADLINE))?;
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request.push_str(&format!("Cookie: {}\r\n", jar.join("; ")));
        }
        if let Some(body) = body {
            request.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(body.unwrap_or(""));
        stream.write_all(request.as_bytes())?;
        Ok(stream)
    }

    fn head(&mut self, reader: &mut impl BufRead) -> anyhow::Result<(u16, Vec<(String, String)>)> {
        let mut status_line = String::new();
        reader.read_line(&mut status_line)?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_lowercase(), v.trim().to_string()));
            }
        }
        for (k, v) in &headers {
            if k != "set-cookie" {
                continue;
            }
            let pair = v.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || v.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_string(), value.to_string());
                }
            }
        }
        Ok((status, headers))
    }

    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        body: Option<&str>,
    ) -> anyhow::Result<Response> {
        let stream = self.send(method, target, body)?;
        let mut reader = BufReader::new(stream);
        let (status, headers) = self.head(&mut reader)?;
        let length = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let mut raw = Vec::new();
        match length {
            // Some servers keep the connection open anyway.
            Some(n) => {
                raw.resize(n, 0);
                reader.read_exact(&mut raw)?;
            }
            None => {
                reader.read_to_end(&mut raw)?;
            }
        }
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let raw = if chunked { dechunk(&raw) } else { raw };
        Ok(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&raw).into_owned(),
        })
    }

    pub fn get(&mut self, target: &str) -> anyhow::Result<Response> {
        self.request("GET", target, None)
    }

    pub fn post(&mut self, target: &str, form: &[(&str, &str)]) -> anyhow::Result<Response> {
        let body: String = form_body(form);
        self.request("POST", target, Some(&body))
    }

    /// Fetch the login form and send it back with `user` and `password`.
    pub fn login(&mut self, user: &str, password: &str) -> anyhow::Result<Response> {
        let form = self.get("/login")?;
        let token = form
            .input_value("csrf")
            .ok_or_else(|| anyhow::anyhow!("no csrf on the login page"))?;
        self.post(
            "/login",
            &[("csrf", &token), ("user", user), ("password", password)],
        )
    }

    /// Open an event stream; read it with [`EventStream::wait_for`].
    pub fn events(&mut self, target: &str) -> anyhow::Result<EventStream> {
        let stream = self.send("GET", target, None)?;
        let mut reader = BufReader::new(stream);
        let (status, headers) = self.head(&mut reader)?;
        // Short reads from here on, so that `wait_for` can poll.
        reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(EventStream {
            status,
            headers,
            reader,
            seen: Vec::new(),
        })
    }
}

pub fn form_body(form: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (k, v) in form {
        if !s.is_empty() {
            s.push('&');
        }
        s.push_str(&format!("{}={}", encode(k), encode(v)));
    }
    s
}

/// Percent-encode for a query or form value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        raw = &raw[eol + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[(size + 2).min(raw.len())..];
    }
    out
}

pub struct EventStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    seen: Vec<u8>,
}

impl EventStream {
    /// Wait until the stream has carried `text` (in its raw, chunked bytes).
    pub fn wait_for(&mut self, text: &str) -> anyhow::Result<String> {
        wait::until(&format!("{text:?} in the event stream"), || {
            let mut buf = [0u8; 4096];
            if let Ok(n) = self.reader.read(&mut buf) {
                self.seen.extend_from_slice(&buf[..n]);
            }
            let seen = String::from_utf8_lossy(&self.seen).into_owned();
            seen.contains(text).then_some(seen)
        })
    }
}
