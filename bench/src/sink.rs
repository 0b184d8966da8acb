//! The sink: the "IM servers" of the bench, run as a child process
//! (`imspector-bench sink`) so that its descriptors and CPU are its own.
//! What it does with a connection depends on the port (see [`SinkPort`]).

use std::io::Write;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::lab::SinkPort;
use crate::measure::monotonic_ns;

/// Same read size as every relay in the comparison.
pub const BUFFER: usize = 64 * 1024;
/// Marks the send timestamp in a latency probe line.
pub const STAMP: &str = "T=";

/// Serve until killed. Prints `ready` on stdout once every port listens.
pub fn serve() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut listeners = Vec::new();
        for port in SinkPort::ALL {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind(port.addr())?;
            listeners.push((port, socket.listen(4096)?));
        }
        println!("ready");
        std::io::stdout().flush()?;
        let mut tasks = tokio::task::JoinSet::new();
        for (port, listener) in listeners {
            tasks.spawn(accept_loop(port, listener));
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    })
}

async fn accept_loop(port: SinkPort, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    let _ = match port {
                        SinkPort::Plain | SinkPort::Irc => count(stream).await,
                        SinkPort::IrcLatency => latencies(stream).await,
                        SinkPort::IrcEcho => echo(stream).await,
                    };
                });
            }
            Err(e) => {
                eprintln!("sink: accept on {}: {e}", port.port());
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Read to the end; answer how many bytes arrived.
async fn count(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; BUFFER];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    stream.write_all(format!("{total}\n").as_bytes()).await?;
    stream.shutdown().await
}

/// Note when each probe line arrives; answer the latencies (ns), one a line.
async fn latencies(stream: TcpStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::with_capacity(BUFFER, read).lines();
    let mut found = Vec::new();
    while let Some(line) = lines.next_line().await? {
        let now = monotonic_ns();
        let sent = line
            .split_once(STAMP)
            .and_then(|(_, rest)| rest.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(sent) = sent {
            found.push(now.saturating_sub(sent));
        }
    }
    let text: String = found.iter().map(|ns| format!("{ns}\n")).collect();
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

async fn echo(stream: TcpStream) -> std::io::Result<()> {
    let (mut read, mut write) = stream.into_split();
    tokio::io::copy(&mut read, &mut write).await?;
    write.shutdown().await
}
