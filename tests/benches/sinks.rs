//! Events per second into each sink, through the writer thread, until the
//! events are committed (the writer and the database workers have stopped).
//!
//! `cargo bench -p imspector-e2e --bench sinks` (as root: it starts private MariaDB
//! and PostgreSQL servers like the tests do). Prints the median of a few runs.

use std::time::Instant;

use imspector::config::{Config, Settings};
use imspector::event::LogEvent;
use imspector_e2e::databases;

const EVENTS: usize = 20_000;
const RUNS: usize = 5;

fn run_once(config_text: &str, events: &[LogEvent]) -> f64 {
    let settings = Settings::parse("bench.conf", config_text).unwrap();
    let config = Config::from_settings(settings).unwrap();
    let sinks = imspector::build_sinks(&config).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let start = Instant::now();
    let (logger, writer) = imspector::log::spawn_writer(sinks, false);
    rt.block_on(async {
        for e in events {
            logger.log(e.clone()).await;
        }
    });
    drop(logger);
    writer.join().unwrap();
    events.len() as f64 / start.elapsed().as_secs_f64()
}

/// Median events per second over [`RUNS`] runs, each with a fresh spool.
fn measure(name: &str, config: impl Fn(&std::path::Path) -> String, events: &[LogEvent]) {
    let mut rates: Vec<f64> = (0..RUNS)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            run_once(&config(dir.path()), events)
        })
        .collect();
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name:24} median {:>8.0} events/s (min {:.0}, max {:.0})",
        rates[RUNS / 2],
        rates[0],
        rates[RUNS - 1]
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // 20 users in conversation, as on a small network (the file sink keeps a
    // file per conversation and day).
    let events: Vec<LogEvent> = (0..EVENTS)
        .map(|n| LogEvent {
            local_id: format!("user{}@example.org", n % 20).into(),
            ..databases::event(n)
        })
        .collect();
    println!("{EVENTS} events per run, {RUNS} runs per sink");
    measure(
        "file",
        |d| format!("file_logging_dir={}\n", d.join("logs").display()),
        &events,
    );
    measure(
        "sqlite",
        |d| {
            format!(
                "sqlite_file={}\nspool_dir={}\n",
                d.join("db").display(),
                d.join("spool").display()
            )
        },
        &events,
    );
    // What the journal's durability costs (spool_sync; group is the default above).
    for sync in ["always", "off"] {
        measure(
            &format!("sqlite spool_sync={sync}"),
            |d| {
                format!(
                    "sqlite_file={}\nspool_dir={}\nspool_sync={sync}\n",
                    d.join("db").display(),
                    d.join("spool").display()
                )
            },
            &events,
        );
    }
    let mariadb = databases::Mariadb::start();
    measure(
        "mariadb",
        |d| {
            mariadb.sql(&format!(
                "DROP TABLE IF EXISTS {}.messages",
                databases::DB_NAME
            ));
            format!("{}spool_dir={}\n", mariadb.config(), d.display())
        },
        &events,
    );
    drop(mariadb);
    let postgres = databases::Postgres::start();
    measure(
        "postgres",
        |d| {
            postgres.sql("DROP TABLE IF EXISTS messages");
            format!(
                "pgsql_connect={}\nspool_dir={}\n",
                postgres.connect_string(),
                d.display()
            )
        },
        &events,
    );
}
