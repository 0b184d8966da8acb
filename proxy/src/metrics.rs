//! `metrics_listen`: the daemon's counters on `/metrics`, in the Prometheus
//! text format (prometheus-client). Off unless the option is set.
//!
//! The counters are process-wide, so the relay, the writer and the database
//! threads count with one call where things happen.

use std::net::SocketAddr;
use std::sync::OnceLock;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use imspector_protocols::{Direction, EventType, Stop};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub protocol: String,
    pub r#type: &'static str,
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StopLabels {
    pub protocol: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    /// Static: counted per read, so no name is copied for it.
    pub protocol: &'static str,
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: String,
}

pub struct Metrics {
    registry: Registry,
    pub connections_open: Family<ProtocolLabel, Gauge>,
    pub connections: Family<ProtocolLabel, Counter>,
    pub events: Family<EventLabels, Counter>,
    pub filtered: Family<ProtocolLabel, Counter>,
    pub notices: Family<ProtocolLabel, Counter>,
    pub parser_stops: Family<StopLabels, Counter>,
    pub over_budget: Family<ProtocolLabel, Counter>,
    pub new_conversations_refused: Family<ProtocolLabel, Counter>,
    pub bytes: Family<BytesLabels, Counter>,
    pub sink_up: Family<SinkLabel, Gauge>,
    pub database_up: Family<SinkLabel, Gauge>,
    pub journal_backlog: Family<SinkLabel, Gauge>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("imspector");
        let m = Metrics {
            connections_open: Family::default(),
            connections: Family::default(),
            events: Family::default(),
            filtered: Family::default(),
            notices: Family::default(),
            parser_stops: Family::default(),
            over_budget: Family::default(),
            new_conversations_refused: Family::default(),
            bytes: Family::default(),
            sink_up: Family::default(),
            database_up: Family::default(),
            journal_backlog: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "connections_open",
            "Inspected connections open now",
            m.connections_open.clone(),
        );
        r.register(
            "connections",
            "Inspected connections accepted",
            m.connections.clone(),
        );
        r.register("events", "Chat events seen", m.events.clone());
        r.register(
            "events_filtered",
            "Events a filter blocked",
            m.filtered.clone(),
        );
        r.register(
            "notices_sent",
            "Notices sent to local users",
            m.notices.clone(),
        );
        r.register(
            "parser_stops",
            "Connections whose parser stopped and that were relayed plainly from there",
            m.parser_stops.clone(),
        );
        r.register(
            "over_budget_releases",
            "Connections relayed plainly from a point on because all held more than max_buffered_bytes",
            m.over_budget.clone(),
        );
        r.register(
            "new_conversations_refused",
            "Events not delivered nor logged because their client started more than max_new_conversations a minute",
            m.new_conversations_refused.clone(),
        );
        r.register(
            "bytes_relayed",
            "Bytes relayed through inspected connections",
            m.bytes.clone(),
        );
        r.register(
            "sink_up",
            "1 when the sink's last write worked (for a database sink: its journal)",
            m.sink_up.clone(),
        );
        r.register(
            "database_up",
            "1 while a database sink is connected",
            m.database_up.clone(),
        );
        r.register(
            "journal_backlog_events",
            "Events in a database sink's journal not yet committed",
            m.journal_backlog.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

/// The process's counters.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

fn direction(dir: Direction) -> &'static str {
    match dir {
        Direction::Outgoing => "out",
        Direction::Incoming => "in",
    }
}

fn protocol(p: &str) -> ProtocolLabel {
    ProtocolLabel {
        protocol: p.to_string(),
    }
}

/// Counts a connection as open until dropped.
pub struct OpenConnection(ProtocolLabel);

pub fn connection_opened(p: &str) -> OpenConnection {
    let m = get();
    m.connections.get_or_create(&protocol(p)).inc();
    m.connections_open.get_or_create(&protocol(p)).inc();
    OpenConnection(protocol(p))
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        get().connections_open.get_or_create(&self.0).dec();
    }
}

/// One event, and whether it was blocked and how many notices it caused.
pub fn event(p: &str, kind: EventType, dir: Direction, filtered: bool, notices: usize) {
    let m = get();
    let r#type = kind.name();
    m.events
        .get_or_create(&EventLabels {
            protocol: p.to_string(),
            r#type,
            direction: direction(dir),
        })
        .inc();
    if filtered {
        m.filtered.get_or_create(&protocol(p)).inc();
    }
    if notices > 0 {
        m.notices.get_or_create(&protocol(p)).inc_by(notices as u64);
    }
}

/// One connection's event counters, each looked up in its family once,
/// and counted once per read ([`EventTally`]) rather than per event.
pub struct EventCounters {
    protocol: &'static str,
    /// By [`EventType::code`] - 1, then outgoing, incoming.
    events: [[OnceLock<Counter>; 2]; 4],
    filtered: OnceLock<Counter>,
    notices: OnceLock<Counter>,
}

/// The events of one read, counted before they go to [`EventCounters::add`].
#[derive(Default)]
pub struct EventTally {
    events: [[u64; 2]; 4],
    filtered: u64,
    notices: u64,
}

/// Where [`EventTally`] and [`EventCounters`] keep an event of `kind` going `dir`.
fn slot(kind: EventType, dir: Direction) -> (usize, usize) {
    (
        usize::from(kind.code() - 1),
        usize::from(dir == Direction::Incoming),
    )
}

impl EventTally {
    /// As [`event`] counts it.
    pub fn count(&mut self, kind: EventType, dir: Direction, filtered: bool, notices: usize) {
        let (k, d) = slot(kind, dir);
        self.events[k][d] += 1;
        self.filtered += u64::from(filtered);
        self.notices += notices as u64;
    }
}

impl EventCounters {
    pub fn new(protocol: &'static str) -> Self {
        EventCounters {
            protocol,
            events: Default::default(),
            filtered: OnceLock::new(),
            notices: OnceLock::new(),
        }
    }

    /// Count what `tally` holds.
    pub fn add(&self, tally: &EventTally) {
        let m = get();
        let kinds = [
            EventType::Message,
            EventType::File,
            EventType::Typing,
            EventType::Webcam,
        ];
        for kind in kinds {
            for dir in [Direction::Outgoing, Direction::Incoming] {
                let (k, d) = slot(kind, dir);
                if tally.events[k][d] > 0 {
                    let labels = || EventLabels {
                        protocol: self.protocol.to_string(),
                        r#type: kind.name(),
                        direction: direction(dir),
                    };
                    let counter =
                        self.events[k][d].get_or_init(|| m.events.get_or_create(&labels()).clone());
                    counter.inc_by(tally.events[k][d]);
                }
            }
        }
        for (family, counter, n) in [
            (&m.filtered, &self.filtered, tally.filtered),
            (&m.notices, &self.notices, tally.notices),
        ] {
            if n > 0 {
                counter
                    .get_or_init(|| family.get_or_create(&protocol(self.protocol)).clone())
                    .inc_by(n);
            }
        }
    }
}

pub fn parser_stopped(p: &str, stop: &Stop) {
    let reason = match stop {
        Stop::Encrypted(_) => "encrypted",
        Stop::NotThisProtocol(_) => "not_this_protocol",
        Stop::TooLarge { .. } => "too_large",
    };
    get()
        .parser_stops
        .get_or_create(&StopLabels {
            protocol: p.to_string(),
            reason,
        })
        .inc();
}

/// A connection released to plain relay by `max_buffered_bytes`.
pub fn over_budget(p: &str) {
    get().over_budget.get_or_create(&protocol(p)).inc();
}

/// An event refused by `max_new_conversations`.
pub fn new_conversation_refused(p: &str) {
    get()
        .new_conversations_refused
        .get_or_create(&protocol(p))
        .inc();
}

pub fn relayed(p: &'static str, dir: Direction, bytes: usize) {
    get()
        .bytes
        .get_or_create(&BytesLabels {
            protocol: p,
            direction: direction(dir),
        })
        .inc_by(bytes as u64);
}

pub fn sink_written(sink: &str, ok: bool) {
    get()
        .sink_up
        .get_or_create(&SinkLabel { sink: sink.into() })
        .set(i64::from(ok));
}

pub fn database(sink: &str, up: bool, backlog: u64) {
    let m = get();
    let label = SinkLabel { sink: sink.into() };
    m.database_up.get_or_create(&label).set(i64::from(up));
    m.journal_backlog
        .get_or_create(&label)
        .set(i64::try_from(backlog).unwrap_or(i64::MAX));
}

/// Bind `metrics_listen`; errors name the option.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("metrics_listen {addr}: {e}"))
}

/// Answer `GET /metrics` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let (status, body) = if req.uri().path() == "/metrics" {
                        (StatusCode::OK, get().encode())
                    } else {
                        (StatusCode::NOT_FOUND, "only /metrics here\n".to_string())
                    };
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = status;
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    Ok::<_, std::convert::Infallible>(response)
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
