//! Talking ICAP to the daemon's service: c-icap-client (the reference
//! implementation's client) and raw requests for the malformed cases.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::netns::Netns;

/// Run c-icap-client in `ns` with `args`; what it printed (stdout and stderr).
pub fn c_icap_client(ns: &Netns, args: &[&str]) -> anyhow::Result<String> {
    let out = ns.command("c-icap-client").args(args).output()?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// What the server did with raw bytes: its answer, and whether it closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    pub closed: bool,
}

impl Reply {
    /// The status lines of every answer, in order.
    pub fn status_lines(&self) -> Vec<&str> {
        self.text
            .split("\r\n")
            .filter(|l| l.starts_with("ICAP/1.0 "))
            .collect()
    }
}

/// Connect to `addr`, send `parts` (pausing `pause` between them), and read
/// until the server closes or is quiet for `quiet`.
pub fn send_raw(
    addr: SocketAddr,
    parts: &[&[u8]],
    pause: Duration,
    quiet: Duration,
) -> anyhow::Result<Reply> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(quiet))?;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(pause);
        }
        if stream.write_all(part).is_err() {
            break;
        }
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(_) => break true,
        }
    };
    Ok(Reply {
        text: String::from_utf8_lossy(&got).into_owned(),
        closed,
    })
}

/// A REQMOD for `PUT url` with `body` in one chunk (`preview` announced when
/// given, however long the body is).
pub fn reqmod(url: &str, body: &str, preview: Option<usize>) -> Vec<u8> {
    let mut out = reqmod_head(url, body.len(), preview);
    out.extend_from_slice(&chunk(body.as_bytes()));
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A REQMOD for `PUT url` with a preview of `preview` bytes of `body`, as a
/// client sends it: the head and the preview, then (once the server asked
/// with `100 Continue`) the rest.
pub fn reqmod_with_preview(url: &str, body: &str, preview: usize) -> (Vec<u8>, Vec<u8>) {
    let (first, rest) = body.as_bytes().split_at(preview.min(body.len()));
    let mut head = reqmod_head(url, body.len(), Some(preview));
    head.extend_from_slice(&chunk(first));
    let mut tail = Vec::new();
    if rest.is_empty() {
        head.extend_from_slice(b"0; ieof\r\n\r\n");
    } else {
        head.extend_from_slice(b"0\r\n\r\n");
        tail.extend_from_slice(&chunk(rest));
        tail.extend_from_slice(b"0\r\n\r\n");
    }
    (head, tail)
}

fn reqmod_head(url: &str, body_len: usize, preview: Option<usize>) -> Vec<u8> {
    let http = format!("PUT {url} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n");
    let preview = preview.map_or(String::new(), |n| format!("Preview: {n}\r\n"));
    format!(
        "REQMOD icap://127.0.0.1/reqmod ICAP/1.0\r\nHost: 127.0.0.1\r\nAllow: 204\r\n{preview}Encapsulated: req-hdr=0, req-body={}\r\n\r\n{http}",
        http.len()
    )
    .into_bytes()
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// Read ICAP answers from `stream` until `count` heads (each up to its empty
/// line) have arrived; their heads. For answers without a body (100, 204, errors).
pub fn read_heads(stream: &mut TcpStream, count: usize) -> anyhow::Result<Vec<String>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.windows(4).filter(|w| w == b"\r\n\r\n").count() < count {
        let n = stream.read(&mut buf)?;
        anyhow::ensure!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(got)?;
    Ok(text
        .split_terminator("\r\n\r\n")
        .map(str::to_string)
        .collect())
}

/// A plain HTTP server (Python's standard library) in `ns` on `addr` that
/// answers every POST with `{"success": true}` and appends each request's path,
/// Content-Length header and body to `dir/requests.log`, one line each.
pub struct RecordingServer {
    pub process: crate::process::Process,
    log: std::path::PathBuf,
}

impl RecordingServer {
    pub fn start(ns: &Netns, dir: &std::path::Path, addr: SocketAddr) -> anyhow::Result<Self> {
        let log = dir.join("requests.log");
        let script = dir.join("server.py");
        std::fs::write(
            &script,
            format!(
                "import http.server\n\
                 class H(http.server.BaseHTTPRequestHandler):\n\
                 \x20   def do_POST(self):\n\
                 \x20       n = int(self.headers.get('Content-Length', 0))\n\
                 \x20       body = self.rfile.read(n).decode()\n\
                 \x20       with open({log:?}, 'a') as f:\n\
                 \x20           f.write(f'{{self.path}} {{n}} {{body}}\\n')\n\
                 \x20       answer = b'{{\"success\": true}}'\n\
                 \x20       self.send_response(200)\n\
                 \x20       self.send_header('Content-Type', 'application/json')\n\
                 \x20       self.send_header('Content-Length', str(len(answer)))\n\
                 \x20       self.end_headers()\n\
                 \x20       self.wfile.write(answer)\n\
                 http.server.HTTPServer(({ip:?}, {port}), H).serve_forever()\n",
                log = log.display().to_string(),
                ip = addr.ip().to_string(),
                port = addr.port(),
            ),
        )?;
        let mut command = ns.command("python3");
        command.arg(&script);
        let process =
            crate::process::Process::spawn("http server", command, dir.join("server.out"))?;
        crate::wait::until("the HTTP server to listen", || {
            ns.exec("ss", &["-Htln"])
                .ok()?
                .contains(&addr.to_string())
                .then_some(())
        })?;
        Ok(RecordingServer { process, log })
    }

    /// The requests received so far, one line each: `path content-length body`.
    pub fn requests(&self) -> Vec<String> {
        crate::wait::read(&self.log)
            .lines()
            .map(str::to_string)
            .collect()
    }
}
