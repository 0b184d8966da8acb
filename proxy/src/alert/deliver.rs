//! Sending one alert: a POST of its JSON to `alert_webhook` (hyper's HTTP/1
//! client, over rustls for https, retried), and/or `alert_command` run by
//! `/bin/sh -c` with the JSON on its standard input.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Tries of a webhook, and the waits between them.
const WEBHOOK_TRIES: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_secs(1),
    Duration::from_secs(4),
];
/// Longest a webhook try (connect, send, answer) or a command may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// Where alerts go.
#[derive(Clone)]
pub struct Targets {
    pub webhook: Option<Webhook>,
    pub command: Option<String>,
}

#[derive(Clone)]
pub struct Webhook {
    uri: Uri,
    host: String,
    port: u16,
    /// For https.
    tls: Option<Arc<tokio_rustls::TlsConnector>>,
}

impl Webhook {
    /// An `http://` or `https://` URL; https trusts the system's CAs.
    pub fn parse(url: &str) -> Result<Webhook, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("{url:?} is not an http:// or https:// URL")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("{url:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let (roots, _, _) = crate::tls::upstream::roots(None)?;
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Some(Arc::new(tokio_rustls::TlsConnector::from(Arc::new(config))))
        } else {
            None
        };
        Ok(Webhook {
            uri,
            host,
            port,
            tls,
        })
    }

    /// POST `json`, retried; the last error when every try failed.
    pub async fn post(&self, json: &Bytes) -> Result<(), String> {
        let mut last = String::new();
        for wait in WEBHOOK_TRIES {
            tokio::time::sleep(wait).await;
            match tokio::time::timeout(DEADLINE, self.try_post(json.clone())).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer within {DEADLINE:?}"),
            }
        }
        Err(format!(
            "{}: gave up after {} tries: {last}",
            self.uri,
            WEBHOOK_TRIES.len()
        ))
    }

    async fn try_post(&self, json: Bytes) -> Result<(), String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        match &self.tls {
            None => self.exchange(tcp, json).await,
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| e.to_string())?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                self.exchange(stream, json).await
            }
        }
    }

    async fn exchange<S>(&self, stream: S, json: Bytes) -> Result<(), String>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let authority = self
            .uri
            .authority()
            .map_or(self.host.as_str(), |a| a.as_str());
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "imspector")
            .body(Full::new(json))
            .map_err(|e| e.to_string())?;
        let answer = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", answer.status()))
        }
    }
}

/// Run `command` with `json` on its standard input; why it failed.
pub async fn run_command(command: &str, json: &Bytes) -> Result<(), String> {
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{command:?}: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let ran = tokio::time::timeout(DEADLINE, async {
        // A command that does not read its input still gets to run.
        let _ = stdin.write_all(json).await;
        drop(stdin);
        child.wait_with_output().await
    })
    .await;
    match ran {
        Err(_) => Err(format!(
            "{command:?}: still running after {DEADLINE:?}; killed"
        )),
        Ok(Err(e)) => Err(format!("{command:?}: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr.lines().next().unwrap_or_default();
            Err(format!("{command:?}: {}: {first}", out.status))
        }
    }
}
