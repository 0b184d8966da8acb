//! iperf3 through every inspected port: its control connection is a stream
//! no core knows (a cookie, then one-byte states), its data connections bulk
//! bytes. Each target relays the same test to an iperf3 server listening on
//! the port, both ways.

use std::process::Command;

use anyhow::{bail, Context};

use crate::lab::{INSPECTED_PORTS, IPERF_IP};
use crate::measure::summarize;
use crate::targets::{Kind, Target};

/// Gbit/s of one iperf3 test of `seconds` through `target` to `port`.
fn run_once(target: &Target, port: u16, reverse: bool, seconds: u32) -> anyhow::Result<f64> {
    let (source, dst) = target.iperf_route(port).context("no iperf3 route")?;
    let mut server = Command::new("iperf3")
        .args([
            "-s",
            "-1",
            "-B",
            &IPERF_IP.to_string(),
            "-p",
            &port.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("iperf3 (apt-get install iperf3)")?;
    // The one-off server must listen before the client connects.
    let mut report = None;
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(40));
        let mut client = Command::new("iperf3");
        client.args(["-c", &dst.ip().to_string(), "-p", &dst.port().to_string()]);
        client.args(["-B", &source.to_string(), "-t", &seconds.to_string(), "-J"]);
        if reverse {
            client.arg("-R");
        }
        let out = client.output()?;
        if out.status.success() {
            report = Some(out.stdout);
            break;
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    let Some(report) = report else {
        bail!("iperf3 through {} to port {port} did not run", target.kind);
    };
    let report: serde_json::Value = serde_json::from_slice(&report)?;
    let bits = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 report without end.sum_received")?;
    Ok(bits / 1e9)
}

/// The table: per port and direction, the medians of each target and the
/// ratio of imspector to haproxy.
pub fn workload(targets: &[Target], runs: usize, seconds: u32) -> anyhow::Result<()> {
    let relays: Vec<&Target> = targets
        .iter()
        .filter(|t| t.iperf_route(INSPECTED_PORTS[0]).is_some())
        .collect();
    println!("## iperf3 through every inspected port\n");
    println!(
        "One iperf3 test of {seconds} s per run (one TCP stream, client to server and with -R \
         server to client), {runs} runs; Gbit/s received, medians (range).\n"
    );
    let names: Vec<String> = relays.iter().map(|t| t.kind.to_string()).collect();
    println!(
        "| port | direction | {} | imspector / haproxy |",
        names.join(" | ")
    );
    println!("|---|---|{}---|", "---|".repeat(relays.len()));
    for port in INSPECTED_PORTS {
        for reverse in [false, true] {
            let mut rates: Vec<Vec<f64>> = vec![Vec::new(); relays.len()];
            for _ in 0..runs {
                for (target, rates) in relays.iter().zip(&mut rates) {
                    rates.push(run_once(target, port, reverse, seconds)?);
                }
            }
            let median = |kind: Kind| {
                relays
                    .iter()
                    .position(|t| t.kind == kind)
                    .and_then(|i| summarize(&rates[i]))
                    .map(|s| s.median)
            };
            let cells: Vec<String> = rates
                .iter()
                .map(|r| {
                    summarize(r).map_or("-".into(), |s| {
                        format!("{:.2} ({:.2} .. {:.2})", s.median, s.min, s.max)
                    })
                })
                .collect();
            let ratio = match (median(Kind::Imspector), median(Kind::Haproxy)) {
                (Some(i), Some(h)) if h > 0.0 => format!("{:.2}", i / h),
                _ => "-".into(),
            };
            let direction = if reverse {
                "server to client"
            } else {
                "client to server"
            };
            println!("| {port} | {direction} | {} | {ratio} |", cells.join(" | "));
        }
    }
    println!();
    Ok(())
}
