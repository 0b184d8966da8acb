//! One task per connection: find the original destination, connect there, and
//! relay both directions through the protocol's parser, the filters and the logger.

mod conversations;
mod link;

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use imspector_protocols::{
    new_session, ChatEvent, Direction, EventType, Frame, HandoffTable, Pdu, ProtocolKind,
    ProtocolSession, Rewrite, Stop as CoreStop,
};
use smallvec::SmallVec;
use tokio::net::TcpStream;
use tokio::time::Instant;

use conversations::{Conversations, Ids};
use link::{Link, Pipe};

use crate::budget::{self, Budget, Release, Share};
use crate::config::{Config, Routes, Uninspectable};
use crate::event::{LogEvent, HIDDEN};
use crate::filter::{FilterChain, FilterEvent};
use crate::log::Logger;
use crate::net::{self, display_addr, Upstream};
use crate::new_conversations::{Admission, Conversation, NewConversations};
use crate::tls::{self, Interceptor};

/// Bytes read at once from a busy socket. An idle one holds no buffer at all.
/// 256 KiB rather than 64: bulk IRC lines, copied and looked at, took about
/// 15 % less relay CPU per byte (fewer reads, writes and wake-ups per byte).
const READ_CHUNK: usize = 256 * 1024;

/// Becomes true when the daemon stops.
pub type Stop = tokio::sync::watch::Receiver<bool>;

/// What every session shares.
pub struct Shared {
    pub config: Config,
    pub upstream: Upstream,
    /// Swapped as a whole on SIGHUP; sessions take a reference per event.
    pub filters: RwLock<Arc<FilterChain>>,
    pub logger: Logger,
    /// Login cookies and the users they stand for, across connections (OSCAR).
    pub ids: Arc<HandoffTable>,
    /// `ssl=on`: TLS is intercepted.
    pub tls: Option<Interceptor>,
    /// `max_buffered_bytes`: what all cores may hold at once.
    pub budget: Arc<Budget>,
    /// `max_new_conversations`: the conversations each client started lately.
    pub new_conversations: NewConversations,
    /// The protocols and ports in force; swapped on SIGHUP.
    pub routes: RwLock<Arc<Routes>>,
}

/// Login cookies remembered at once: each is presented within seconds of
/// the login, so this bounds memory without losing a live one.
pub const LOGIN_COOKIES: usize = 4096;

impl Shared {
    /// What the sessions of a daemon with `config` share.
    pub fn new(
        config: Config,
        filters: FilterChain,
        logger: Logger,
        tls: Option<Interceptor>,
    ) -> Self {
        Shared {
            upstream: Upstream {
                interface: config.interface.clone(),
                mark: config.upstream_mark,
                timeout: config.connect_timeout,
            },
            filters: RwLock::new(Arc::new(filters)),
            logger,
            ids: Arc::new(HandoffTable::new(LOGIN_COOKIES)),
            tls,
            budget: Arc::new(Budget::new(config.max_buffered_bytes)),
            new_conversations: NewConversations::new(config.max_new_conversations),
            routes: RwLock::new(Arc::new(config.routes.clone())),
            config,
        }
    }

    fn filters(&self) -> Arc<FilterChain> {
        self.filters.read().expect("filter lock poisoned").clone()
    }

    /// The protocols and ports in force.
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.read().expect("routes lock poisoned").clone()
    }
}

/// Serve one accepted connection to the end.
pub async fn serve(client: TcpStream, peer: SocketAddr, shared: Arc<Shared>, stop: Stop) {
    let client_name = display_addr(peer);
    let dst = match net::original_destination(&client, shared.config.interception) {
        Ok(dst) => dst,
        Err(e) => {
            log::warn!("{client_name}: no original destination ({e}); is the REDIRECT rule in place? closed");
            return;
        }
    };
    let local = client.local_addr().unwrap_or(dst);
    if net::is_own_listener(dst, local, shared.config.port) {
        log::warn!("{client_name}: connection to our own listener {dst} refused (it would loop)");
        return;
    }
    let Some(kind) = shared.routes().protocol_for_port(dst.port()) else {
        log::info!(
            "{client_name}: port {} is not an enabled protocol; closed",
            dst.port()
        );
        return;
    };
    let server = match shared.upstream.connect(dst).await {
        Ok(s) => s,
        Err(e) => {
            log::warn!(
                "{client_name}: {} connection to {dst} failed: {e}",
                kind.log_name()
            );
            return;
        }
    };
    relay_inspected(client, server, kind, peer, shared, stop, BytesMut::new()).await;
}

/// Relay an established pair of connections through `kind`'s parser.
/// `initial` holds bytes the client already sent (after a CONNECT request).
pub async fn relay_inspected(
    client: TcpStream,
    server: TcpStream,
    kind: ProtocolKind,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: Stop,
    initial: BytesMut,
) {
    let client_name = display_addr(peer);
    let Ok(dst_addr) = server.peer_addr() else {
        return;
    };
    let dst = dst_addr.to_string();
    // Chat lines are small and each must go out at once; the relay already
    // writes whole reads, so Nagle's delay would only add latency.
    for stream in [&client, &server] {
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("{client_name}: TCP_NODELAY: {e}");
        }
    }
    let _open = crate::metrics::connection_opened(kind.log_name());
    let direct_tls = shared.routes().is_tls_port(dst_addr.port());
    let mut parser = new_session(kind).filter(|_| !direct_tls || shared.tls.is_some());
    if let Some(parser) = parser.as_mut() {
        parser.share_ids(shared.ids.clone());
    }
    if direct_tls && shared.tls.is_none() {
        // The name is for the log only: a stream whose server speaks first
        // must not wait for it longer than any held byte would.
        let peek = tls::peek_server_name(&client, &initial);
        let name = tokio::time::timeout(shared.config.hold_timeout, peek)
            .await
            .ok()
            .flatten();
        log::info!(
            "{client_name}: {} to {dst}: TLS, relayed untouched (ssl is off)",
            kind.log_name()
        );
        let event = tls::encrypted_event(
            &client_name,
            kind.log_name().into(),
            dst_addr,
            name.as_deref(),
            "TLS",
        );
        shared.logger.log(event).await;
    } else if parser.is_none() {
        log::info!(
            "{client_name}: {} to {dst}: no parser for this protocol yet, relaying plainly",
            kind.log_name()
        );
    } else {
        log::debug!("{client_name}: {} to {dst}", kind.log_name());
    }
    let share = shared.budget.share();
    let inspector = Inspector {
        kind,
        client: client_name.as_str().into(),
        client_ip: net::plain_ip(peer.ip()),
        parser: Mutex::new(parser),
        release: share.release.clone(),
        share: Mutex::new(share),
        shared,
        opened: Instant::now(),
        last_read_ms: AtomicU64::new(0),
        dst: dst_addr,
        conversations: Mutex::default(),
        counters: crate::metrics::EventCounters::new(kind.log_name()),
    };
    let (links, initial) = match &inspector.shared.tls {
        Some(interceptor) if direct_tls => {
            match interceptor
                .intercept(client, server, &initial, None, dst_addr.ip(), &client_name)
                .await
            {
                Ok(tls) => (Links::intercepted(tls), BytesMut::new()),
                Err(why) => return inspector.tls_failed(&why),
            }
        }
        _ => (Links::plain(client, server), initial),
    };
    if let Err(e) = relay(links, &inspector, stop, initial).await {
        log::debug!("{client_name}: connection ended: {e}");
    }
}

/// The per-connection state both directions share.
struct Inspector {
    kind: ProtocolKind,
    /// Shared with every log record of the connection.
    client: Arc<str>,
    /// The client's address, which `max_new_conversations` counts by.
    client_ip: IpAddr,
    /// `None` once the connection is relayed plainly (no parser, encrypted, or
    /// the parser lost sync).
    parser: Mutex<Option<Box<dyn ProtocolSession>>>,
    shared: Arc<Shared>,
    opened: Instant,
    /// When a byte last arrived from either side, in ms after `opened`.
    last_read_ms: AtomicU64,
    /// The server's address.
    dst: SocketAddr,
    /// What the core holds of this connection, within `max_buffered_bytes`.
    share: Mutex<Share>,
    /// Set when the budget releases this connection to plain relay.
    release: Arc<Release>,
    /// The conversations seen, so that their events share ids and admission.
    conversations: Mutex<Conversations>,
    counters: crate::metrics::EventCounters,
}

/// Which socket bytes go to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// The result of inspecting one read.
#[derive(Default)]
struct Processed {
    output: Vec<(Side, Bytes)>,
    events: Vec<LogEvent>,
    /// End the connection once the output and events are out.
    close: bool,
    /// The core saw a STARTTLS go through and TLS is intercepted.
    start_tls: bool,
    /// The core has stopped, or there never was one: the bytes go by untouched.
    untouched: bool,
    /// The events judged, for the metrics.
    tally: crate::metrics::EventTally,
}

/// Why a direction stopped relaying.
#[derive(PartialEq, Eq)]
enum Ended {
    /// End of stream, or the daemon stops.
    Closed,
    /// TLS starts now (after a STARTTLS): both sides need their handshake.
    StartTls,
}

/// Relay until both directions end; after an intercepted STARTTLS, on over
/// TLS with the same core.
async fn relay(
    mut links: Links,
    inspector: &Inspector,
    stop: Stop,
    mut initial: BytesMut,
) -> io::Result<()> {
    while relay_links(
        &links,
        inspector,
        stop.clone(),
        std::mem::take(&mut initial),
    )
    .await?
        == Ended::StartTls
    {
        links = inspector.start_tls(links).await?;
    }
    Ok(())
}

async fn relay_links(
    links: &Links,
    inspector: &Inspector,
    stop: Stop,
    initial: BytesMut,
) -> io::Result<Ended> {
    let outgoing = pump(
        Direction::Outgoing,
        &links.client,
        links,
        inspector,
        stop.clone(),
        initial,
    );
    let incoming = pump(
        Direction::Incoming,
        &links.server,
        links,
        inspector,
        stop,
        BytesMut::new(),
    );
    let idle = inspector.idle_for_too_long();
    tokio::pin!(outgoing, incoming, idle);
    let (mut out_done, mut in_done) = (false, false);
    // A clean end of one direction is a half-close: keep the other going.
    // An error ends both. A STARTTLS stops both: the client that asked for it
    // sends nothing more in plaintext.
    while !(out_done && in_done) {
        let ended = tokio::select! {
            r = &mut outgoing, if !out_done => { out_done = true; r? }
            r = &mut incoming, if !in_done => { in_done = true; r? }
            silence = &mut idle => {
                log::info!(
                    "{}: {}: no byte either way for {} s; closed (idle_timeout)",
                    inspector.client,
                    inspector.kind.log_name(),
                    silence.as_secs()
                );
                return Ok(Ended::Closed);
            }
        };
        if ended == Ended::StartTls {
            return Ok(Ended::StartTls);
        }
    }
    Ok(Ended::Closed)
}

/// Both ends of the connection.
struct Links {
    client: Link,
    server: Link,
}

impl Links {
    fn plain(client: TcpStream, server: TcpStream) -> Self {
        Links {
            client: Link::new(client, None),
            server: Link::new(server, None),
        }
    }

    fn intercepted(tls: tls::Intercepted) -> Self {
        Links {
            client: Link::new(tls.client, Some(tls.client_tls)),
            server: Link::new(tls.server, Some(tls.server_tls)),
        }
    }

    fn of(&self, side: Side) -> &Link {
        match side {
            Side::Client => &self.client,
            Side::Server => &self.server,
        }
    }

    /// Write `output` in order, each run of frames for one side with as few
    /// system calls as the socket allows.
    async fn send(&self, output: Vec<(Side, Bytes)>) -> io::Result<()> {
        let mut output = output.into_iter().peekable();
        let mut run = Vec::new();
        while let Some((side, bytes)) = output.next() {
            run.push(bytes);
            while let Some((_, bytes)) = output.next_if(|(next, _)| *next == side) {
                run.push(bytes);
            }
            self.of(side).send(&mut run).await?;
        }
        Ok(())
    }
}

/// Bytes of one direction that the core has not framed yet (a partial PDU),
/// and how many of them were already forwarded because they waited too long.
#[derive(Default)]
struct Pending {
    buf: BytesMut,
    /// The first `forwarded` bytes of `buf` went out already.
    forwarded: usize,
    /// When bytes past `forwarded` started waiting.
    held_since: Option<Instant>,
}

impl Pending {
    /// Forget the bytes of a frame the core split off the front, returning the
    /// part of them that still has to be sent (empty when all went out before).
    fn unsent(&mut self, mut bytes: Bytes) -> (Bytes, bool) {
        let early = self.forwarded.min(bytes.len());
        self.forwarded -= early;
        bytes.advance(early);
        (bytes, early > 0)
    }

    /// Start or stop the hold clock after the core has taken what it framed.
    fn note_held(&mut self) {
        if self.buf.len() <= self.forwarded {
            self.held_since = None;
        } else if self.held_since.is_none() {
            self.held_since = Some(Instant::now());
        }
    }

    /// The held bytes not yet forwarded, as a copy: the core keeps them to
    /// frame the PDU once it is complete.
    fn release(&mut self) -> Bytes {
        let bytes = Bytes::copy_from_slice(&self.buf[self.forwarded..]);
        self.forwarded = self.buf.len();
        self.held_since = None;
        bytes
    }

    /// Everything not yet forwarded, taken out of the buffer.
    fn take_rest(&mut self) -> Bytes {
        let mut rest = self.buf.split().freeze();
        rest.advance(self.forwarded.min(rest.len()));
        self.forwarded = 0;
        self.held_since = None;
        rest
    }
}

/// Relay one direction until its end of stream.
async fn pump(
    dir: Direction,
    src: &Link,
    writers: &Links,
    inspector: &Inspector,
    mut stop: Stop,
    initial: BytesMut,
) -> io::Result<Ended> {
    let dst = match dir {
        Direction::Outgoing => Side::Server,
        Direction::Incoming => Side::Client,
    };
    let hold_timeout = inspector.shared.config.hold_timeout;
    let mut pending = Pending {
        buf: initial,
        ..Default::default()
    };
    let mut splice_tried = false;
    if !pending.buf.is_empty() {
        let processed = inspector.process(dir, dst, &mut pending);
        if deliver(processed, writers, inspector).await? {
            return Ok(Ended::StartTls);
        }
    }
    loop {
        if let Some(rest) = inspector.released(&mut pending) {
            let output = vec![(dst, rest)];
            let processed = Processed {
                output,
                ..Default::default()
            };
            deliver(processed, writers, inspector).await?;
        }
        // Room for a full chunk; while data keeps coming this reuses the same
        // allocation, so a busy connection does not allocate per read.
        let buf = &mut pending.buf;
        buf.reserve(READ_CHUNK.saturating_sub(buf.len()).max(READ_CHUNK / 4));
        let eof = match src.try_read_buf(buf) {
            Ok(n) => {
                inspector.touch();
                crate::metrics::relayed(inspector.kind.log_name(), dir, n);
                if n > 0 && src.wants_write() {
                    src.send(&mut Vec::new()).await?;
                }
                n == 0
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing more for now: an idle connection holds no buffer.
                shrink_when_idle(buf);
                // Boxed, and only while a partial PDU is held: a timer is 112
                // bytes, twice in every idle connection's task.
                let mut hold = pending
                    .held_since
                    .map(|since| Box::pin(tokio::time::sleep_until(since + hold_timeout)));
                // Shutdown takes effect between reads, so no event is cut in half.
                let timed_out = tokio::select! {
                    ready = src.readable() => { ready?; false }
                    _ = async { if let Some(hold) = &mut hold { hold.await } }, if hold.is_some() => true,
                    _ = stop.wait_for(|stopping| *stopping) => return Ok(Ended::Closed),
                    _ = inspector.release.notify.notified(), if !inspector.release.is_set() => false,
                };
                if timed_out {
                    log::debug!(
                        "{}: {} bytes waited {} ms for the rest of their PDU; forwarded",
                        inspector.client,
                        pending.buf.len() - pending.forwarded,
                        hold_timeout.as_millis()
                    );
                    let output = vec![(dst, pending.release())];
                    deliver(
                        Processed {
                            output,
                            ..Default::default()
                        },
                        writers,
                        inspector,
                    )
                    .await?;
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let processed = if eof {
            // What the parser still holds (a line without its end) goes out as it is.
            Processed {
                output: vec![(dst, pending.take_rest())],
                ..Default::default()
            }
        } else {
            inspector.process(dir, dst, &mut pending)
        };
        let untouched = processed.untouched && pending.buf.is_empty();
        if deliver(processed, writers, inspector).await? {
            return Ok(Ended::StartTls);
        }
        if eof {
            // Half-close: the other direction may still be talking.
            let _ = writers.of(dst).shutdown().await;
            return Ok(Ended::Closed);
        }
        if untouched && !splice_tried && src.is_plain() && writers.of(dst).is_plain() {
            splice_tried = true;
            match Pipe::new() {
                Ok(pipe) => {
                    return Box::pin(splice_rest(
                        dir,
                        src,
                        writers.of(dst),
                        inspector,
                        stop,
                        pipe,
                    ))
                    .await
                }
                Err(e) => log::debug!(
                    "{}: no pipe to splice the rest through ({e}); copying it",
                    inspector.client
                ),
            }
        }
    }
}

/// Relay the rest of one direction whose core has stopped, socket to socket
/// through a kernel pipe: nothing looks at these bytes any more, so they are
/// not copied into the proxy and back.
async fn splice_rest(
    dir: Direction,
    src: &Link,
    dst: &Link,
    inspector: &Inspector,
    mut stop: Stop,
    pipe: Pipe,
) -> io::Result<Ended> {
    let way = match dir {
        Direction::Outgoing => "client to server",
        Direction::Incoming => "server to client",
    };
    log::debug!(
        "{}: {}: {way}: spliced socket to socket from here",
        inspector.client,
        inspector.kind.log_name()
    );
    loop {
        match src.splice_to(dst, &pipe).await {
            Ok(0) => {
                let _ = dst.shutdown().await;
                return Ok(Ended::Closed);
            }
            Ok(n) => {
                inspector.touch();
                crate::metrics::relayed(inspector.kind.log_name(), dir, n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::select! {
                    ready = src.readable() => ready?,
                    _ = stop.wait_for(|stopping| *stopping) => return Ok(Ended::Closed),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Queue the events of one read, then send its bytes on. Boxed (one
/// allocation per read): the task of every connection, idle ones too, is as
/// large as its largest await point, and `pump` awaits this at four.
/// The events are queued first so that a session aborted at shutdown while
/// its bytes are being forwarded loses none (the queue waits only while the
/// writer is behind); with `log_failure=block` the bytes wait until the
/// events are written. True when TLS starts after these bytes.
fn deliver<'a>(
    processed: Processed,
    writers: &'a Links,
    inspector: &'a Inspector,
) -> Pin<Box<impl Future<Output = io::Result<bool>> + 'a>> {
    Box::pin(async move {
        if !processed.events.is_empty() {
            let logger = &inspector.shared.logger;
            logger.log_all(processed.events).await;
            if inspector.shared.config.block_unlogged {
                logger.written().await;
            }
        }
        writers.send(processed.output).await?;
        if processed.close {
            return Err(io::Error::other("closed: a PDU too large to inspect"));
        }
        Ok(processed.start_tls)
    })
}

/// Drop the buffer's allocation when it holds nothing, and keep only what a
/// partial PDU needs when it holds one.
fn shrink_when_idle(buf: &mut BytesMut) {
    if buf.is_empty() {
        *buf = BytesMut::new();
    } else if buf.capacity() > 2 * buf.len() + 4096 {
        *buf = BytesMut::from(&buf[..]);
    }
}

impl Inspector {
    /// Note that bytes arrived, for the idle timeout.
    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_read_ms.store(ms, Ordering::Relaxed);
    }

    /// Completes once no byte has arrived for `idle_timeout`, for protocols
    /// whose clients send keep-alives; never for the others.
    async fn idle_for_too_long(&self) -> Duration {
        let limit = match self.shared.config.idle_timeout {
            Some(limit) if self.kind.has_keepalives() => limit,
            _ => return std::future::pending().await,
        };
        loop {
            let last = Duration::from_millis(self.last_read_ms.load(Ordering::Relaxed));
            let silent = self.opened.elapsed().saturating_sub(last);
            if silent >= limit {
                return silent;
            }
            tokio::time::sleep(limit - silent).await;
        }
    }

    fn process(&self, dir: Direction, dst: Side, pending: &mut Pending) -> Processed {
        let mut processed = Processed::default();
        let mut guard = self.parser.lock().expect("parser lock poisoned");
        let Some(parser) = guard.as_mut() else {
            processed.output.push((dst, pending.take_rest()));
            processed.untouched = true;
            return processed;
        };
        let now = unix_now();
        parser.set_now(now);
        let feed = parser.feed(dir, &mut pending.buf);
        let frames = feed.frames.len();
        processed.output.reserve(frames);
        let mut judging = None;
        for frame in feed.frames {
            match frame {
                Frame::Opaque(bytes) => processed.output.push((dst, pending.unsent(bytes).0)),
                Frame::Pdu(pdu) => {
                    let judging = judging.get_or_insert_with(|| self.judging(now, frames));
                    self.judge(
                        parser.as_ref(),
                        judging,
                        (dir, dst),
                        pdu,
                        pending,
                        &mut processed,
                    )
                }
            }
        }
        match feed.stop {
            Some(CoreStop::Encrypted(how)) if self.shared.tls.is_some() => {
                log::info!(
                    "{}: {}: {how}; intercepting the TLS",
                    self.client,
                    self.kind.log_name()
                );
                processed.start_tls = true;
                processed.output.push((dst, pending.take_rest()));
            }
            Some(stop) => {
                crate::metrics::parser_stopped(self.kind.log_name(), &stop);
                if let CoreStop::Encrypted(how) = &stop {
                    let how = if how.contains("STARTTLS") {
                        "STARTTLS"
                    } else {
                        "TLS"
                    };
                    processed.events.push(tls::encrypted_event(
                        &self.client,
                        self.kind.log_name().into(),
                        self.dst,
                        parser.server_name(),
                        how,
                    ));
                }
                *guard = None;
                processed.close = self.stopped(stop, &mut processed);
                if !processed.close {
                    processed.output.push((dst, pending.take_rest()));
                }
            }
            None => pending.note_held(),
        }
        let core = guard.as_ref().map_or(0, |parser| parser.held());
        processed.untouched = guard.is_none();
        drop(guard);
        self.counters.add(&processed.tally);
        // Room was reserved for an event per frame: given back when most
        // frames had none, so that queued events do not hold it. A frame or
        // two without (a read's last, partial line) is not worth the realloc.
        if processed.events.capacity() > 2 * processed.events.len() {
            processed.events.shrink_to_fit();
        }
        self.account(dir, pending, core);
        processed
    }

    /// Tell the budget what this direction and the core hold now.
    fn account(&self, dir: Direction, pending: &Pending, core: usize) {
        let side = usize::from(dir == Direction::Incoming);
        // The connections it releases count themselves once they notice.
        let mut share = self.share.lock().expect("share lock poisoned");
        share.set(side, pending.buf.len());
        share.set(budget::CORE, core);
    }

    /// Once the budget released this connection: the held bytes of this
    /// direction, to go out now, with the core dropped (said once).
    fn released(&self, pending: &mut Pending) -> Option<Bytes> {
        if !self.release.is_set() {
            return None;
        }
        if self
            .parser
            .lock()
            .expect("parser lock poisoned")
            .take()
            .is_some()
        {
            crate::metrics::over_budget(self.kind.log_name());
            log::warn!(
                "{}: {}: the connections hold more than max_buffered_bytes ({} bytes) in partial messages, this one among the most; relaying the rest of it untouched",
                self.client,
                self.kind.log_name(),
                self.shared.config.max_buffered_bytes
            );
            self.share.lock().expect("share lock poisoned").clear();
        }
        if pending.buf.is_empty() {
            return None;
        }
        Some(pending.take_rest())
    }

    /// Handshake both sides after a STARTTLS; the core goes on with the plaintext.
    async fn start_tls(&self, links: Links) -> io::Result<Links> {
        let interceptor = self
            .shared
            .tls
            .as_ref()
            .expect("STARTTLS is intercepted only with ssl=on");
        let name = self
            .parser
            .lock()
            .expect("parser lock poisoned")
            .as_ref()
            .and_then(|p| p.server_name().map(str::to_string));
        let (client, server) = (links.client.into_stream()?, links.server.into_stream()?);
        match interceptor
            .intercept(
                client,
                server,
                &[],
                name.as_deref(),
                self.dst.ip(),
                &self.client,
            )
            .await
        {
            Ok(tls) => {
                log::info!(
                    "{}: {}: TLS intercepted for {}",
                    self.client,
                    self.kind.log_name(),
                    tls.name
                );
                Ok(Links::intercepted(tls))
            }
            Err(why) => {
                self.tls_failed(&why);
                Err(io::Error::other(why))
            }
        }
    }

    fn tls_failed(&self, why: &str) {
        log::warn!(
            "{}: {} to {}: {why}; closed",
            self.client,
            self.kind.log_name(),
            self.dst
        );
    }

    /// Say why inspection stopped; for a PDU too large to inspect, also in its
    /// conversation's log, and count it. True when the connection is to close.
    fn stopped(&self, stop: imspector_protocols::Stop, processed: &mut Processed) -> bool {
        let imspector_protocols::Stop::TooLarge { why, conversation } = stop else {
            log::info!(
                "{}: {}: {stop}; relaying the rest of this connection untouched",
                self.client,
                self.kind.log_name()
            );
            return false;
        };
        let close = self.shared.config.uninspectable == Uninspectable::Close;
        let outcome = if close {
            "the connection is closed"
        } else {
            "the rest of the connection is relayed without inspection or logging"
        };
        log::warn!(
            "{}: {}: {why}: too large to inspect; {outcome}",
            self.client,
            self.kind.log_name()
        );
        if let Some(event) = conversation {
            processed.events.push(LogEvent {
                timestamp: unix_now(),
                client: self.client.clone(),
                protocol: self.kind.log_name().into(),
                outgoing: event.direction == Direction::Outgoing,
                kind: event.kind,
                local_id: event.local_id.to_lowercase().into(),
                remote_id: event.remote_id.to_lowercase().into(),
                filtered: close,
                categories: "uninspectable;".into(),
                data: format!(
                    "[IMSpector: inspection stopped: {why}: too large to inspect; {outcome}]"
                ),
            });
        }
        close
    }

    /// What the PDUs of a read of `frames` frames at `now` are judged with.
    fn judging(&self, now: i64, frames: usize) -> Judging {
        Judging {
            filters: self.shared.filters(),
            now,
            instant: std::time::Instant::now(),
            frames,
        }
    }

    /// Run a PDU's events through the filters, log them, and decide what to
    /// send (the PDU goes `dir`, to `dst`).
    fn judge(
        &self,
        parser: &dyn ProtocolSession,
        judging: &Judging,
        (dir, dst): (Direction, Side),
        mut pdu: Pdu,
        pending: &mut Pending,
        processed: &mut Processed,
    ) {
        // A PDU whose start went out after the hold timeout can only be logged.
        let (unsent, late) = pending.unsent(pdu.bytes.clone());
        if pdu.events.is_empty() || late {
            processed.output.push((dst, unsent));
        }
        if pdu.events.is_empty() {
            return;
        }
        let (filters, now) = (&judging.filters, judging.now);
        let config = &self.shared.config;
        let protocol = || Cow::Borrowed(self.kind.log_name());
        // log_failure=block: nothing can store the events, so chat stops.
        let unlogged = config.block_unlogged && !self.shared.logger.storing();
        let refusals = self.admit(&pdu.events, judging.instant);
        // max_new_conversations: a refused event is neither judged nor logged,
        // and the PDU goes to none of its targets.
        let any_refused = refusals.iter().any(|(_, refusal)| refusal.is_some());
        // The filters take each text; the record gets it back (or the
        // original a filter kept), so that nothing is copied.
        let mut judged: PerEvent<Judged> = PerEvent::new();
        for (event, (ids, refusal)) in pdu.events.iter_mut().zip(refusals) {
            judged.push(match refusal {
                Some(refusal) => Judged {
                    decided: *refusal,
                    logged: false,
                },
                None => {
                    let text = std::mem::take(&mut event.text);
                    let blocked = unlogged || any_refused;
                    Judged {
                        decided: decide(filters, protocol(), event, ids, text, blocked),
                        logged: is_logged(config, event.kind),
                    }
                }
            });
        }
        let blocked = judged.iter().any(|j| j.decided.blocked);
        let new_text = judged
            .iter()
            .find(|j| j.decided.changed())
            .map(|j| j.decided.text.clone());
        let mut bytes = pdu.bytes.clone();
        let mut blocked_here = blocked;
        if let (Some(text), false, false) = (&new_text, blocked, late) {
            match parser.rewrite(dir, &pdu, Rewrite::Text(text)) {
                Some(rewritten) => bytes = rewritten,
                None => {
                    // Fail closed: what the filters changed never goes out as it was.
                    log::warn!(
                        "{}: {} message changed by a filter could not be rewritten; blocked",
                        self.client,
                        self.kind.log_name()
                    );
                    blocked_here = true;
                    for (event, j) in pdu.events.iter().zip(&mut judged) {
                        let ids = Ids {
                            local: j.decided.local_id.clone(),
                            remote: j.decided.remote_id.clone(),
                        };
                        let text = j.decided.original_text().to_string();
                        let again = decide(filters, protocol(), event, ids, text, true);
                        j.decided.notices.extend(again.notices);
                        j.decided.categories = again.categories;
                    }
                }
            }
        }
        let filtered = blocked_here && !late;
        if processed.events.is_empty() {
            // Room for the events of every frame of the read at once.
            processed.events.reserve(judging.frames);
        }
        // Borrowed in place, not moved out: both are a few hundred bytes a message.
        for (event, j) in pdu.events.iter_mut().zip(&mut judged) {
            let mut notices = 0;
            for notice in &j.decided.notices {
                if let Some(bytes) = parser.notice_to_client(&event.remote_id, notice) {
                    processed.output.push((Side::Client, bytes));
                    notices += 1;
                }
            }
            processed
                .tally
                .count(event.kind, event.direction, filtered, notices);
            if j.logged {
                // A PDU goes to all its targets or to none.
                let text = j.decided.take_original();
                let data = || event_data_of(std::mem::take(&mut event.prefix), text);
                let mut record = record(config, &self.client, &j.decided, now, data);
                record.filtered = filtered;
                processed.events.push(record);
            }
        }
        if late {
            if blocked || new_text.is_some() {
                log::warn!(
                    "{}: {} message started out before it was complete (held past hold_timeout_ms): logged, but the filters could not block or change it",
                    self.client,
                    self.kind.log_name()
                );
            }
            return;
        }
        if !blocked_here {
            processed.output.push((dst, bytes));
        }
    }

    /// Each event's conversation ids, and its refusal if `max_new_conversations`
    /// refuses it (a conversation admitted a moment ago is not asked again).
    /// A refusal is rare and large: boxed, so that the entries moved for every
    /// message stay small.
    fn admit(
        &self,
        events: &[ChatEvent],
        now: std::time::Instant,
    ) -> PerEvent<(Ids, Option<Box<FilterEvent>>)> {
        let mut conversations = self
            .conversations
            .lock()
            .expect("conversations lock poisoned");
        events
            .iter()
            .map(|event| {
                let (ids, admitted) = conversations.ids(event, now);
                if admitted {
                    return (ids, None);
                }
                let refusal = refusal(
                    &self.shared.new_conversations,
                    &self.shared.config,
                    &self.client,
                    self.client_ip,
                    Cow::Borrowed(self.kind.log_name()),
                    (event, &ids),
                    now,
                );
                if refusal.is_none() {
                    conversations.admitted(event, now);
                }
                (ids, refusal.map(Box::new))
            })
            .collect()
    }
}

/// One entry per event of a PDU: nearly every PDU has one event, so its
/// entry needs no allocation.
type PerEvent<T> = SmallVec<[T; 1]>;

/// What every PDU of one read is judged with, taken once.
struct Judging {
    /// The filters in force (a SIGHUP changes them for the next read).
    filters: Arc<FilterChain>,
    /// UNIX seconds, for the records.
    now: i64,
    /// For `max_new_conversations`.
    instant: std::time::Instant,
    /// Frames of the read.
    frames: usize,
}

/// One event of a PDU, judged.
struct Judged {
    decided: FilterEvent,
    /// False for a refused event and a typing event that is not logged.
    logged: bool,
}

/// `max_new_conversations` for one event of `client` (counted by its address
/// `ip`): `None` when its conversation is under way or may start now; else
/// what the refusal comes to: blocked, neither judged nor logged, and the
/// local user told why. Said in the log at most once a minute per client.
pub fn refused_conversation(
    limit: &NewConversations,
    config: &Config,
    client: &str,
    ip: IpAddr,
    protocol: Cow<'static, str>,
    event: &ChatEvent,
) -> Option<FilterEvent> {
    let ids = Ids::of(event);
    let now = std::time::Instant::now();
    refusal(limit, config, client, ip, protocol, (event, &ids), now)
}

/// [`refused_conversation`], for an event whose conversation has `ids`.
fn refusal(
    limit: &NewConversations,
    config: &Config,
    client: &str,
    ip: IpAddr,
    protocol: Cow<'static, str>,
    (event, ids): (&ChatEvent, &Ids),
    now: std::time::Instant,
) -> Option<FilterEvent> {
    let conversation = Conversation {
        protocol: &protocol,
        local_id: &ids.local,
        remote_id: &ids.remote,
        direction: event.direction,
    };
    let Admission::Refused { warn } = limit.admit(ip, &conversation, now) else {
        return None;
    };
    let max = config.max_new_conversations;
    crate::metrics::new_conversation_refused(&protocol);
    if let Some(refused) = warn {
        log::warn!(
            "{client}: {protocol}: {ip} is in more new conversations than max_new_conversations ({max} a minute each way); {refused} messages of new conversations were neither delivered nor logged since the last warning",
        );
    }
    let mut refusal = filter_event(protocol, event, ids.clone(), event.text.clone(), true);
    if event.direction == Direction::Outgoing {
        refusal.notices.push(format!(
            "IMSpector: more than {max} new conversations a minute from this computer (max_new_conversations); this message was not sent"
        ));
    }
    Some(refusal)
}

/// One event through the filters, as the relay and the ICAP service both judge
/// them: what the filters decided (`blocked`, the text to deliver, notices),
/// and the record to log (`None` for a typing event that is not logged).
/// `blocked`: it is blocked whatever the filters say (`log_failure=block`
/// while nothing can store events).
pub fn judge_event(
    filters: &FilterChain,
    config: &Config,
    client: &str,
    protocol: Cow<'static, str>,
    event: &ChatEvent,
    now: i64,
    blocked: bool,
) -> (FilterEvent, Option<LogEvent>) {
    let (ids, text) = (Ids::of(event), event.text.clone());
    let decided = decide(filters, protocol, event, ids, text, blocked);
    let record = is_logged(config, event.kind)
        .then(|| record(config, &client.into(), &decided, now, || event.event_data()));
    (decided, record)
}

/// What the filters decide for `event` with its conversation's `ids` and its
/// `text` (already `blocked` before they run: they still add their
/// categories and the blocked notice).
fn decide(
    filters: &FilterChain,
    protocol: Cow<'static, str>,
    event: &ChatEvent,
    ids: Ids,
    text: String,
    blocked: bool,
) -> FilterEvent {
    let mut decided = filter_event(protocol, event, ids, text, blocked);
    filters.apply(&mut decided);
    decided
}

/// Whether events of `kind` are logged (typing only with `log_typing_events`).
fn is_logged(config: &Config, kind: EventType) -> bool {
    kind != EventType::Typing || config.log_typing_events
}

/// The log record of an event the filters `decided`; `data` makes its event
/// data (the text before any filter changed it), unless `hide_eventdata` hides it.
fn record(
    config: &Config,
    client: &Arc<str>,
    decided: &FilterEvent,
    now: i64,
    data: impl FnOnce() -> String,
) -> LogEvent {
    LogEvent {
        timestamp: now,
        client: client.clone(),
        protocol: decided.protocol.clone(),
        outgoing: decided.direction == Direction::Outgoing,
        kind: decided.kind,
        local_id: decided.local_id.clone(),
        remote_id: decided.remote_id.clone(),
        filtered: decided.blocked,
        categories: decided.categories.clone(),
        data: if config.hide_eventdata {
            HIDDEN.to_string()
        } else {
            data()
        },
    }
}

/// [`ChatEvent::event_data`] from an event's prefix and its original text:
/// the text itself when there is no prefix, so that nothing is copied.
fn event_data_of(prefix: String, text: String) -> String {
    if prefix.is_empty() {
        return text;
    }
    let mut data = prefix;
    data.push_str(&text);
    data
}

/// `event` with `ids` and `text` as the filters see it, before they ran.
fn filter_event(
    protocol: Cow<'static, str>,
    event: &ChatEvent,
    ids: Ids,
    text: String,
    blocked: bool,
) -> FilterEvent {
    FilterEvent {
        protocol,
        direction: event.direction,
        kind: event.kind,
        local_id: ids.local,
        remote_id: ids.remote,
        group: event.group,
        encrypted: event.encrypted,
        text,
        original: None,
        blocked,
        categories: String::new(),
        notices: Vec::new(),
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
