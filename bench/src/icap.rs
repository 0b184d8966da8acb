//! The ICAP workload: imspector's ICAP service against c-icap's echo service
//! (the reference implementation), same run, same client, on loopback.
//! - transactions/s: `--connections` persistent connections, each sending
//!   REQMOD after REQMOD as fast as the answers come;
//! - added latency: one connection, one request at a time, per-transaction
//!   round trip.
//!
//! Two requests: a Matrix message (`PUT .../send/m.room.message/...`, the
//! body whole in a preview with `ieof`), which imspector parses, judges and
//! logs before answering 204; and a request no handler reads (`GET`, no body),
//! answered from the heads.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::measure::{cpu_seconds, percentile, summarize};

const C_ICAP: &str = "127.0.0.1:1345";
const IMSPECTOR: &str = "127.0.0.1:1346";

/// A server process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What is sent: a name and the request's bytes (for `service`).
fn requests(service: &str) -> Vec<(&'static str, Vec<u8>)> {
    let body = r#"{"msgtype":"m.text","body":"hello bob, this is a chat line"}"#;
    let put = format!(
        "PUT http://matrix.bench/_matrix/client/v3/rooms/!room:bench/send/m.room.message/t1 HTTP/1.1\r\n\
         Host: matrix.bench\r\nAuthorization: Bearer tok\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let chat = format!(
        "REQMOD icap://127.0.0.1{service} ICAP/1.0\r\nHost: 127.0.0.1\r\nAllow: 204\r\nPreview: 4096\r\n\
         X-Client-IP: 10.0.0.2\r\nEncapsulated: req-hdr=0, req-body={}\r\n\r\n{put}{:x}\r\n{body}\r\n0; ieof\r\n\r\n",
        put.len(),
        body.len()
    );
    let get = "GET http://www.bench/index.html HTTP/1.1\r\nHost: www.bench\r\n\r\n";
    let other = format!(
        "REQMOD icap://127.0.0.1{service} ICAP/1.0\r\nHost: 127.0.0.1\r\nAllow: 204\r\n\
         Encapsulated: req-hdr=0, null-body={}\r\n\r\n{get}",
        get.len()
    );
    vec![
        ("Matrix message", chat.into_bytes()),
        ("other request (no body)", other.into_bytes()),
    ]
}

/// Read one ICAP answer (head, header sections, and a chunked body when it
/// has one); its status code.
fn read_answer(reader: &mut BufReader<TcpStream>) -> anyhow::Result<u16> {
    let mut line = String::new();
    let mut status = 0;
    let mut encapsulated = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("the server closed the connection");
        }
        if status == 0 {
            status = line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
        }
        if let Some(value) = line.strip_prefix("Encapsulated:") {
            encapsulated = value.trim().to_string();
        }
        if line == "\r\n" {
            break;
        }
    }
    if status == 100 {
        bail!("100 Continue to a request whose preview held the whole body");
    }
    let last = encapsulated
        .rsplit(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let (name, offset) = last.split_once('=').unwrap_or(("null-body", "0"));
    let mut sections = vec![0u8; offset.parse().unwrap_or(0)];
    reader.read_exact(&mut sections)?;
    if name != "null-body" {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)?;
            let mut data = vec![0u8; size + 2];
            reader.read_exact(&mut data)?;
            if size == 0 {
                break;
            }
        }
    }
    Ok(status)
}

/// `count` transactions on one persistent connection; each one's round trip in ns.
fn transactions(addr: SocketAddr, request: &[u8], count: usize) -> anyhow::Result<(Vec<u64>, u16)> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut times = Vec::with_capacity(count);
    let mut status = 0;
    for _ in 0..count {
        let start = Instant::now();
        writer.write_all(request)?;
        status = read_answer(&mut reader)?;
        times.push(start.elapsed().as_nanos() as u64);
    }
    Ok((times, status))
}

/// CPU seconds of a process and its children (c-icap serves from a child).
fn tree_cpu_seconds(pid: i32) -> f64 {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    cpu_seconds(pid)
        + children
            .split_whitespace()
            .filter_map(|c| c.parse().ok())
            .map(tree_cpu_seconds)
            .sum::<f64>()
}

fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("nothing listens on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn start_c_icap(dir: &Path) -> anyhow::Result<Server> {
    let d = dir.display();
    let modules = "/usr/lib/x86_64-linux-gnu/c_icap";
    let conf = dir.join("c-icap.conf");
    std::fs::write(
        &conf,
        format!(
            "PidFile {d}/c-icap.pid\nCommandsSocket {d}/c-icap.ctl\nTimeout 300\nMaxKeepAliveRequests 0\n\
             KeepAliveTimeout 600\nStartServers 1\nMaxServers 1\nMinSpareThreads 4\nMaxSpareThreads 64\n\
             ThreadsPerChild 64\nMaxRequestsPerChild 0\nPort {C_ICAP}\nTmpDir {d}\nServerLog {d}/server.log\n\
             AccessLog {d}/access.log\nModulesDir {modules}\nServicesDir {modules}\nService echo srv_echo.so\n"
        ),
    )?;
    let child = Command::new("c-icap")
        .args(["-N", "-D", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("c-icap (Debian package c-icap)")?;
    let server = Server(child);
    wait_listening(C_ICAP.parse()?)?;
    Ok(server)
}

fn start_imspector(imspector: &Path, dir: &Path) -> anyhow::Result<Server> {
    let conf = dir.join("imspector.conf");
    std::fs::write(
        &conf,
        format!(
            "port=16999\nirc_protocol=on\nicap_port={}\nfile_logging_dir={}\n",
            IMSPECTOR.rsplit(':').next().unwrap_or("1346"),
            dir.join("logs").display()
        ),
    )?;
    let child = Command::new(imspector)
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let server = Server(child);
    wait_listening(IMSPECTOR.parse()?)?;
    Ok(server)
}

pub struct IcapPlan {
    pub runs: usize,
    pub connections: usize,
    /// Transactions per connection per run.
    pub per_connection: usize,
    /// Sequential transactions of the latency run.
    pub latency_samples: usize,
}

/// One server's figures for one request, a value per run.
#[derive(Default)]
struct Measured {
    rates: Vec<f64>,
    cpu: Vec<f64>,
    /// Latency percentiles in µs.
    p50: Vec<f64>,
    p99: Vec<f64>,
    /// The ICAP status of the last answer.
    status: u16,
}

impl Measured {
    /// One run against the server at `addr` (process `pid`): the parallel
    /// connections for the rate and CPU, then one connection for the latency.
    fn run(
        &mut self,
        addr: SocketAddr,
        pid: i32,
        request: &[u8],
        plan: &IcapPlan,
    ) -> anyhow::Result<()> {
        let cpu_before = tree_cpu_seconds(pid);
        let start = Instant::now();
        let threads: Vec<_> = (0..plan.connections)
            .map(|_| {
                let request = request.to_vec();
                let count = plan.per_connection;
                std::thread::spawn(move || transactions(addr, &request, count))
            })
            .collect();
        for t in threads {
            let (_, status) = t
                .join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
            self.status = status;
        }
        let total = (plan.connections * plan.per_connection) as f64;
        self.rates.push(total / start.elapsed().as_secs_f64());
        self.cpu
            .push((tree_cpu_seconds(pid) - cpu_before) * 1e6 / total);
        let (mut times, _) = transactions(addr, request, plan.latency_samples)?;
        times.sort_unstable();
        self.p50.push(percentile(&times, 50.0) as f64 / 1000.0);
        self.p99.push(percentile(&times, 99.0) as f64 / 1000.0);
        Ok(())
    }
}

pub fn run(imspector: &Path, plan: &IcapPlan) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("imspector-bench-icap")
        .tempdir()?;
    let c_icap = start_c_icap(dir.path())?;
    let ims_dir = dir.path().join("imspector");
    std::fs::create_dir_all(&ims_dir)?;
    let ims = start_imspector(imspector, &ims_dir)?;
    let servers = [
        (
            "c-icap echo",
            C_ICAP.parse::<SocketAddr>()?,
            "/echo",
            c_icap.0.id() as i32,
        ),
        (
            "imspector",
            IMSPECTOR.parse::<SocketAddr>()?,
            "/reqmod",
            ims.0.id() as i32,
        ),
    ];
    println!(
        "## ICAP: {} connections x {} transactions, {} runs; latency over {} sequential transactions per run\n",
        plan.connections, plan.per_connection, plan.runs, plan.latency_samples
    );
    println!("Runs alternate between the servers, so both see the same load. Medians over runs, ranges in brackets; the ratio is imspector's median over c-icap's.\n");
    println!("| request | server | answer | transactions/s | ratio to c-icap | CPU µs per transaction | latency p50 µs | latency p99 µs |");
    println!("|---|---|---|---|---|---|---|---|");
    for index in 0..requests("/").len() {
        let mut results: Vec<Measured> = servers.iter().map(|_| Measured::default()).collect();
        for _ in 0..plan.runs {
            for (server, measured) in servers.iter().zip(&mut results) {
                let (_, request) = requests(server.2).swap_remove(index);
                measured.run(server.1, server.3, &request, plan)?;
            }
        }
        let label = requests("/")[index].0;
        let baseline = summarize(&results[0].rates).context("no runs")?.median;
        for ((name, ..), measured) in servers.iter().zip(&results) {
            let rate = summarize(&measured.rates).context("no runs")?;
            let cpu = summarize(&measured.cpu).context("no runs")?;
            let p50 = summarize(&measured.p50).context("no runs")?;
            let p99 = summarize(&measured.p99).context("no runs")?;
            println!(
                "| {label} | {name} | {} | {:.0} ({:.0}–{:.0}) | {:.2} | {:.1} | {:.0} ({:.0}–{:.0}) | {:.0} ({:.0}–{:.0}) |",
                measured.status,
                rate.median,
                rate.min,
                rate.max,
                rate.median / baseline,
                cpu.median,
                p50.median,
                p50.min,
                p50.max,
                p99.median,
                p99.min,
                p99.max,
            );
        }
    }
    println!();
    Ok(())
}
