//! `imspector-bench`: the same workloads through the direct connection (the
//! ceiling), imspector, haproxy (TCP mode) and socat (a process per
//! connection), in one namespace over loopback. Prints Markdown tables of
//! medians, ranges, ratios to direct and CPU cost. Needs root (a network
//! namespace and an iptables REDIRECT rule). See docs/PERFORMANCE.md.

mod icap;
mod iperf;
mod lab;
mod load;
mod measure;
mod sink;
mod targets;
mod tls;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use imspector_protocols::synthetic::{self, IrcTraffic};

use crate::lab::SinkPort;
use crate::measure::{percentile, summarize};
use crate::targets::{Kind, LogTo, Target};

#[derive(Parser)]
#[command(about = "Throughput, latency and memory of imspector against direct, haproxy and socat")]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Small volumes and two runs: a smoke test in well under a minute.
    #[arg(long)]
    quick: bool,
    /// Runs per workload and target [default: 5, with --quick 2].
    #[arg(long)]
    runs: Option<usize>,
    #[arg(long, value_delimiter = ',', default_values = ["direct", "imspector", "haproxy", "socat"])]
    targets: Vec<Kind>,
    #[arg(long, value_delimiter = ',', default_values = ["plain", "irc", "chat", "latency", "tls", "idle"])]
    workloads: Vec<Workload>,
    /// Parallel connections of the bulk workloads.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Chat lines per second of the latency workload.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Idle connections held open [default: 9980, with --quick 1000]. Each
    /// costs a relay two descriptors: haproxy holds at most 9985 (and needs
    /// 27 more descriptors) in a 20,000 limit.
    #[arg(long)]
    idle_connections: Option<usize>,
    /// Chat MiB of one run, spread over the connections [default: 24 per
    /// connection, with --quick 4].
    #[arg(long)]
    chat_mib: Option<usize>,
    /// Pin each relay, all its threads, to these CPUs (as `taskset -c` takes
    /// them: `0`, `0,1`); the load generator and the sink stay unpinned.
    #[arg(long)]
    relay_cpus: Option<String>,
    /// Where imspector logs the chat workload's events.
    #[arg(long, value_enum, default_value = "files")]
    log_to: LogTo,
    /// The daemon [default: `imspector` next to this binary].
    #[arg(long)]
    imspector: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Sub {
    /// (internal) The sink server; started by the bench itself.
    Sink,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// (a) Bulk bytes on an uninspected port (5050: not YMSG, so the Yahoo parser stops at once).
    Plain,
    /// (b) Bulk IRC lines without chat events on 6667: parsed, nothing logged.
    Irc,
    /// Chat: IRC PRIVMSG lines as fast as possible, each one parsed and logged.
    Chat,
    /// Per-message one-way latency at --rate chat lines per second.
    Latency,
    /// IRC over TLS: handshakes/s and messages/s, intercepted, relayed
    /// untouched and direct (its own targets; --targets does not apply).
    Tls,
    /// Memory per idle connection.
    Idle,
    /// iperf3 through every inspected port, both ways (not in the default set).
    Iperf3,
    /// ICAP transactions/s and latency: imspector's service against c-icap's
    /// echo service (not in the default set; needs c-icap).
    Icap,
}

/// Volumes of one run.
struct Plan {
    runs: usize,
    /// Bytes per connection of the bulk workloads.
    bulk_per_conn: usize,
    /// Repeats of the 1 MiB chat block per connection.
    chat_repeats: usize,
    /// Chat bytes per connection when less than 1 MiB (`--chat-mib` over
    /// many connections): one block of this size instead.
    chat_bytes: Option<usize>,
    latency_seconds: u32,
    idle: usize,
}

const MIB: usize = 1 << 20;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Sub::Sink) = cli.command {
        return sink::serve();
    }
    let plan = if cli.quick {
        Plan {
            runs: cli.runs.unwrap_or(2),
            bulk_per_conn: 64 * MIB,
            chat_repeats: 4,
            chat_bytes: None,
            latency_seconds: 2,
            idle: cli.idle_connections.unwrap_or(1000),
        }
    } else {
        Plan {
            runs: cli.runs.unwrap_or(5),
            bulk_per_conn: 256 * MIB,
            chat_repeats: 24,
            chat_bytes: None,
            latency_seconds: 10,
            idle: cli.idle_connections.unwrap_or(9980),
        }
    };
    let mut plan = plan;
    if let Some(total) = cli.chat_mib {
        let per_conn = total * MIB / cli.connections.max(1);
        plan.chat_repeats = (per_conn / MIB).max(1);
        plan.chat_bytes = (per_conn < MIB).then_some(per_conn);
    }
    let imspector = match &cli.imspector {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("bench binary directory")?
            .join("imspector"),
    };
    if !imspector.exists() {
        bail!(
            "{} is missing: cargo build --release -p imspector",
            imspector.display()
        );
    }
    lab::enter()?;
    raise_open_files_limit();
    println!("# imspector-bench\n");
    machine();
    let _sink = start_sink()?;
    let mut running = start_targets(&cli, &imspector)?;
    for &workload in &cli.workloads {
        match workload {
            Workload::Plain | Workload::Irc | Workload::Chat => {
                bulk(workload, &running, &cli, &plan)?
            }
            Workload::Latency => latency(&running, &cli, &plan)?,
            Workload::Iperf3 => iperf::workload(&running, plan.runs, plan.latency_seconds.min(3))?,
            Workload::Icap => icap::run(
                &imspector,
                &icap::IcapPlan {
                    runs: plan.runs,
                    connections: cli.connections,
                    per_connection: if cli.quick { 2_000 } else { 20_000 },
                    latency_samples: if cli.quick { 2_000 } else { 10_000 },
                },
            )?,
            Workload::Tls => {
                // Its own imspector instances, on the same port as the others.
                drop(std::mem::take(&mut running));
                tls::run(
                    &imspector,
                    &tls::TlsPlan {
                        runs: plan.runs,
                        connections: cli.connections,
                        handshakes: if cli.quick { 50 } else { 250 },
                        chat_repeats: plan.chat_repeats.min(8),
                    },
                )?;
                running = start_targets(&cli, &imspector)?;
            }
            Workload::Idle => {
                // A fresh relay, so that earlier runs' heap is not counted.
                drop(std::mem::take(&mut running));
                idle(&cli, &plan, &imspector)?;
            }
        }
    }
    println!("load average at the end: {}", load_average());
    Ok(())
}

/// Every target of `--targets`, relays pinned to `--relay-cpus`.
fn start_targets(cli: &Cli, imspector: &std::path::Path) -> anyhow::Result<Vec<Target>> {
    let mut running = Vec::new();
    for &kind in &cli.targets {
        let target = Target::start(kind, imspector, cli.log_to)?;
        if let Some(cpus) = &cli.relay_cpus {
            target.pin(cpus)?;
        }
        running.push(target);
    }
    Ok(running)
}

fn machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "machine: {cores} cores ({cpu}), Linux {}, load average at the start: {}\n",
        kernel.trim(),
        load_average()
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// 10,000 connections need more descriptors than the usual soft limit.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The sink, killed when dropped.
struct SinkProcess(Child);

impl Drop for SinkProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sink() -> anyhow::Result<SinkProcess> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("sink")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    let stdout = child.stdout.take().context("sink stdout")?;
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let sink = SinkProcess(child);
    if line.trim() != "ready" {
        bail!("the sink did not start");
    }
    Ok(sink)
}

/// One row of results per target: the values of each run.
struct Row {
    kind: Kind,
    /// Throughput (MB/s or messages/s) per run.
    rates: Vec<f64>,
    /// Relay CPU seconds per GB (or per million messages) per run.
    cpu: Vec<f64>,
}

fn bulk(workload: Workload, targets: &[Target], cli: &Cli, plan: &Plan) -> anyhow::Result<()> {
    let (port, block, repeat, title) = match workload {
        Workload::Plain => (
            SinkPort::Plain,
            (0..MIB).map(|i| (i * 7 + i / 251) as u8).collect(),
            plan.bulk_per_conn / MIB,
            "(a) bulk bytes, uninspected port 5050",
        ),
        Workload::Irc => (
            SinkPort::Irc,
            synthetic::irc(IrcTraffic::NoEvents, MIB, 7),
            plan.bulk_per_conn / MIB,
            "(b) bulk IRC lines without chat events, port 6667",
        ),
        _ => (
            SinkPort::Irc,
            synthetic::irc(IrcTraffic::Chat, plan.chat_bytes.unwrap_or(MIB), 9),
            plan.chat_repeats,
            match cli.log_to {
                LogTo::Files => {
                    "chat: IRC PRIVMSG lines, each parsed and logged to files, port 6667"
                }
                LogTo::Sqlite => {
                    "chat: IRC PRIVMSG lines, each parsed and logged to SQLite, port 6667"
                }
            },
        ),
    };
    let lines_per_block = block.iter().filter(|&&b| b == b'\n').count() as u64;
    let block = Arc::new(block);
    let chat = workload == Workload::Chat;
    let messages = lines_per_block * (repeat * cli.connections) as u64;
    let mut rows: Vec<Row> = targets
        .iter()
        .map(|t| Row {
            kind: t.kind,
            rates: Vec::new(),
            cpu: Vec::new(),
        })
        .collect();
    let mut logged = load::EventCount::default();
    for _ in 0..plan.runs {
        for (target, row) in targets.iter().zip(&mut rows) {
            if let Some(store) = &target.events {
                logged.update(store)?;
            }
            let logged_before = logged.events;
            let cpu_before = target.cpu_seconds();
            let start = std::time::Instant::now();
            let mut run = load::bulk(target, port, cli.connections, &block, repeat)?;
            if let (true, Some(store)) = (chat, &target.events) {
                // The run is done once every message is logged.
                logged.wait_for(store, logged_before + messages)?;
                run.seconds = run.seconds.max(start.elapsed().as_secs_f64());
            }
            let relay_cpu = target.cpu_seconds() - cpu_before;
            if chat {
                row.rates.push(messages as f64 / run.seconds);
                row.cpu.push(relay_cpu / messages as f64 * 1e6);
            } else {
                row.rates.push(run.bytes as f64 / run.seconds / 1e6);
                row.cpu.push(relay_cpu / (run.bytes as f64 / 1e9));
            }
        }
    }
    let (unit, cpu_unit) = if chat {
        ("messages/s", "relay CPU µs/message")
    } else {
        ("MB/s", "relay CPU s/GB")
    };
    println!("## {title}\n");
    let lines = if workload == Workload::Plain {
        String::new()
    } else {
        format!(
            " (lines of {} bytes on average)",
            block.len() as u64 / lines_per_block
        )
    };
    println!(
        "{} connections, {} per run{lines}, {} runs.\n",
        cli.connections,
        if chat {
            format!("{messages} messages")
        } else {
            format!("{} MiB", repeat * cli.connections)
        },
        plan.runs
    );
    println!("| target | {unit} (median) | range | ratio to direct | {cpu_unit} (median) |");
    println!("|---|---|---|---|---|");
    let direct = rows
        .iter()
        .find(|r| r.kind == Kind::Direct)
        .and_then(|r| summarize(&r.rates))
        .map(|s| s.median);
    for (row, target) in rows.iter().zip(targets) {
        let Some(s) = summarize(&row.rates) else {
            continue;
        };
        let ratio = direct.map_or("-".to_string(), |d| format!("{:.2}", s.median / d));
        let cpu = if target.is_relay() {
            summarize(&row.cpu).map_or("-".into(), |c| format!("{:.2}", c.median))
        } else {
            "-".to_string()
        };
        println!(
            "| {} | {:.0} | {:.0} .. {:.0} | {ratio} | {cpu} |",
            row.kind, s.median, s.min, s.max
        );
    }
    println!();
    Ok(())
}

fn latency(targets: &[Target], cli: &Cli, plan: &Plan) -> anyhow::Result<()> {
    let count = (cli.rate * plan.latency_seconds) as usize;
    // Per target: p50 and p99 of each run, in µs.
    let mut p50: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let mut p99: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for _ in 0..plan.runs {
        for (i, target) in targets.iter().enumerate() {
            let found = load::latency(target, cli.rate, count)?;
            p50[i].push(percentile(&found, 50.0) as f64 / 1e3);
            p99[i].push(percentile(&found, 99.0) as f64 / 1e3);
        }
    }
    println!("## Chat latency at {} messages/s\n", cli.rate);
    println!(
        "One connection, {count} IRC PRIVMSG lines of ~100 bytes per run (TCP_NODELAY on the client), {} runs. \
         One-way: client send → sink receive. Added = target minus direct (medians over runs).\n",
        plan.runs
    );
    println!("| target | p50 µs (median) | p50 range | p99 µs (median) | p99 range | added p50 µs | added p99 µs |");
    println!("|---|---|---|---|---|---|---|");
    let direct = targets.iter().position(|t| t.kind == Kind::Direct);
    let med = |v: &Vec<f64>| summarize(v).map_or(0.0, |s| s.median);
    for (i, target) in targets.iter().enumerate() {
        let (a, b) = (summarize(&p50[i]), summarize(&p99[i]));
        let (Some(a), Some(b)) = (a, b) else { continue };
        let added = |v: &[Vec<f64>], own: f64| {
            direct.map_or("-".to_string(), |d| format!("{:.0}", own - med(&v[d])))
        };
        println!(
            "| {} | {:.0} | {:.0} .. {:.0} | {:.0} | {:.0} .. {:.0} | {} | {} |",
            target.kind,
            a.median,
            a.min,
            a.max,
            b.median,
            b.min,
            b.max,
            added(&p50, a.median),
            added(&p99, b.median)
        );
    }
    println!();
    Ok(())
}

fn idle(cli: &Cli, plan: &Plan, imspector: &std::path::Path) -> anyhow::Result<()> {
    println!("## Memory per idle connection\n");
    println!(
        "A fresh relay; PSS of the relay's processes (and their children) before and after \
         opening the connections, each set up end to end with one IRC line echoed back \
         (port 6669, parsed by imspector), then left idle for 2 s.\n"
    );
    println!("| target | connections | before KiB | after KiB | per connection bytes |");
    println!("|---|---|---|---|---|");
    for &kind in &cli.targets {
        if kind == Kind::Direct {
            continue;
        }
        // socat forks a process per connection: a thousand tell the story.
        let n = if kind == Kind::Socat {
            plan.idle.min(1000)
        } else {
            plan.idle
        };
        let target = Target::start(kind, imspector, LogTo::Files)?;
        // Warm up: a few connections through every code path, then closed.
        load::idle(&target, 10, || ())?;
        std::thread::sleep(std::time::Duration::from_millis(500));
        let before = target.memory_kib();
        let after = load::idle(&target, n, || {
            std::thread::sleep(std::time::Duration::from_secs(2));
            target.memory_kib()
        })?;
        let per = (after as f64 - before as f64) * 1024.0 / n as f64;
        println!("| {kind} | {n} | {before} | {after} | {per:.0} |");
    }
    println!();
    Ok(())
}
