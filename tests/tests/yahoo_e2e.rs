//! Yahoo through the real daemon in the namespace rig, with a scripted YMSG 16
//! client and server (no Yahoo client or server runs here). The ends decode
//! strictly, and tshark's YMSG dissector decodes a capture taken in the
//! client's and in the server's namespace: every packet the ends and the
//! proxy sent must read the same to it as to our decoder.

use imspector::filter::testing;
use imspector_e2e::scripted::yahoo::{self, Yahoo, ALICE, BOB};
use imspector_e2e::scripted::{Item, Scripted, ScriptedFilterRig, ScriptedProtocol};
use imspector_e2e::tshark::Capture;
use imspector_e2e::Rig;

const CAROL: &str = "carol";
const NOTICE: &str = "Message from IMSpector: -=Your activities are being logged=-";

/// The peers with their traffic captured on both sides of the proxy.
struct Session {
    peers: Scripted<Yahoo>,
    captures: [Capture; 2],
}

impl Session {
    fn start(config: &str) -> anyhow::Result<Session> {
        let rig = Rig::new()?;
        let dir = rig.subdir("captures")?;
        let captures = [
            Capture::start(&rig.client, &dir, "client")?,
            Capture::start(&rig.server, &dir, "server")?,
        ];
        let peers = Scripted::start_in(rig, Yahoo::new(), config)?;
        Ok(Session { peers, captures })
    }

    /// Stop capturing and have tshark check every packet of both captures.
    fn check_with_tshark(self) -> anyhow::Result<()> {
        let Session { peers, captures } = self;
        // What the ends read has been on the wire; give dumpcap time to write it.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let [client, server] = captures;
        yahoo::check_with_tshark(
            &client.finish()?,
            peers.client.sent(),
            peers.client.received(),
        )?;
        yahoo::check_with_tshark(
            &server.finish()?,
            peers.server.received(),
            peers.server.sent(),
        )
    }
}

/// The `rest` of each log line (`outgoing,type,filtered,categories,data`).
fn log(peers: &Scripted<Yahoo>, remote: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let lines = peers.ims.wait_log("Yahoo", ALICE, remote, count)?;
    Ok(lines.into_iter().map(|l| l.rest).collect())
}

/// Alice sends `bytes`: the server must get them unchanged, and alice nothing.
fn client_sends(peers: &mut Scripted<Yahoo>, bytes: &[u8]) -> anyhow::Result<()> {
    peers.client.send(bytes)?;
    let (at_server, at_client) = peers.sync()?;
    anyhow::ensure!(at_client.is_empty(), "alice got {at_client:?}");
    let raw: Vec<Vec<u8>> = at_server.into_iter().map(|f| f.raw).collect();
    anyhow::ensure!(raw == [bytes.to_vec()], "the server got {raw:02x?}");
    Ok(())
}

/// The server sends `bytes`: alice must get what follows in `want`, in order
/// (the bytes themselves, or a notice before them), and the server nothing.
fn server_sends(peers: &mut Scripted<Yahoo>, bytes: &[u8], notices: &[Item]) -> anyhow::Result<()> {
    peers.server.send(bytes)?;
    let (at_server, at_client) = peers.sync()?;
    anyhow::ensure!(at_server.is_empty(), "the server got {at_server:?}");
    let (got_notices, got_bytes) = at_client.split_at(at_client.len().saturating_sub(1));
    let notices_got: Vec<Item> = got_notices.iter().map(|f| f.item.clone()).collect();
    anyhow::ensure!(
        notices_got == notices,
        "alice got {notices_got:?} before the packet"
    );
    anyhow::ensure!(
        got_bytes.first().map(|f| f.raw.as_slice()) == Some(bytes),
        "alice got {got_bytes:02x?}"
    );
    Ok(())
}

#[test]
fn filter_scenarios_through_a_scripted_yahoo_session() -> anyhow::Result<()> {
    let Session { peers, captures } = Session::start("")?;
    let mut rig = ScriptedFilterRig::with_peers(peers);
    let dir = rig.peers.rig.subdir("scenarios")?;
    testing::run_all(&mut rig, &dir);
    Session {
        peers: rig.peers,
        captures,
    }
    .check_with_tshark()
}

#[test]
fn one_to_one_events_are_logged_exactly_and_relayed_unchanged() -> anyhow::Result<()> {
    let mut session = Session::start("log_typing_events=on\n")?;
    let peers = &mut session.peers;
    let typing = peers.protocol.typing();
    client_sends(peers, &typing)?;
    let webcam = peers.protocol.webcam_invite();
    client_sends(peers, &webcam)?;
    let offer = peers.protocol.file_offer("holiday.jpg", 48213);
    client_sends(peers, &offer)?;
    let hello = peers.protocol.message("hello bob");
    client_sends(peers, &hello)?;
    server_sends(peers, &yahoo::incoming_typing(BOB), &[])?;
    server_sends(
        peers,
        &yahoo::incoming_message(BOB, b"caf\xe9 cr\xe8me", false),
        &[],
    )?;
    let offline = yahoo::offline_messages(&[(BOB, "are you there?"), (CAROL, "call me")]);
    server_sends(peers, &offline, &[])?;
    assert_eq!(
        log(peers, BOB, 7)?,
        [
            "1,3,0,,",
            "1,4,0,,",
            "1,2,0,,holiday.jpg 48213 bytes",
            "1,1,0,,hello bob",
            "0,3,0,,",
            "0,1,0,,café crème",
            "0,1,0,,are you there?",
        ]
    );
    assert_eq!(log(peers, CAROL, 1)?, ["0,1,0,,call me"]);
    session.check_with_tshark()
}

#[test]
fn a_file_offer_is_logged_then_blocked() -> anyhow::Result<()> {
    let mut session = Session::start("")?;
    let peers = &mut session.peers;
    let offer = peers.protocol.file_offer("holiday.jpg", 48213);
    client_sends(peers, &offer)?;
    peers.ims.reload("yahoo_protocol=on\nblock_files=on\n")?;
    peers.client.send(&offer)?;
    let (at_server, at_client) = peers.sync()?;
    assert!(at_server.is_empty(), "the server got {at_server:?}");
    assert!(at_client.is_empty(), "alice got {at_client:?}");
    // The session goes on.
    let text = peers.protocol.message("still here");
    client_sends(peers, &text)?;
    assert_eq!(
        log(peers, BOB, 3)?,
        [
            "1,2,0,,holiday.jpg 48213 bytes",
            "1,2,1,,holiday.jpg 48213 bytes",
            "1,1,0,,still here",
        ]
    );
    session.check_with_tshark()
}

#[test]
fn conferences_and_chat_rooms_are_group_chats_with_notices() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = format!(
        "responder_filename={}\nnotice_days=7\n",
        dir.path().join("responder.db").display()
    );
    let mut session = Session::start(&config)?;
    let peers = &mut session.peers;
    let room = "bob-7811";
    server_sends(peers, &yahoo::conference_invite(BOB, room, &[CAROL]), &[])?;
    // The first line of the conference brings the notice, into the conference,
    // from the participant the proxy last saw.
    let notice = Item::Other(format!("conference {room} {CAROL}: {NOTICE}"));
    let hello = yahoo::incoming_conference_message(CAROL, room, "hello all");
    server_sends(peers, &hello, &[notice])?;
    let mine = peers
        .protocol
        .conference_message(room, &[BOB, CAROL], "hi both");
    client_sends(peers, &mine)?;
    assert_eq!(
        log(peers, room, 2)?,
        ["0,1,0,,carol: hello all", "1,1,0,,hi both"]
    );

    let chat = "linux:1";
    // From the participant as the room spells them.
    let notice = Item::Other(format!("room {chat} Dave: {NOTICE}"));
    server_sends(
        peers,
        &yahoo::incoming_chat_message("Dave", chat, "morning", false),
        &[notice],
    )?;
    server_sends(
        peers,
        &yahoo::incoming_chat_message("Dave", chat, "waves", true),
        &[],
    )?;
    let mine = peers.protocol.chat_message(chat, "hi room");
    client_sends(peers, &mine)?;
    assert_eq!(
        log(peers, chat, 3)?,
        [
            "0,1,0,,dave: morning",
            "0,1,0,,dave: /me waves",
            "1,1,0,,hi room"
        ]
    );
    session.check_with_tshark()
}

#[test]
fn incoming_rewrite_stays_a_valid_packet() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("regex.txt");
    std::fs::write(&rules, "(?i)\\bcolou?r\\b => shade of hue\n")?;
    let mut session = Session::start(&format!("regex_filename={}\n", rules.display()))?;
    let peers = &mut session.peers;
    peers
        .server
        .send(&yahoo::incoming_message(BOB, b"nice colour!", true))?;
    assert_eq!(
        peers.client_frame()?.item,
        Item::Text {
            from: Some(BOB.into()),
            text: "nice shade of hue!".into()
        }
    );
    assert_eq!(log(peers, BOB, 1)?, ["0,1,0,,nice colour!"]);
    session.check_with_tshark()
}

/// Alice sends a good message, then `bad`: the daemon prints `line` (after
/// the client's address), the server gets every byte unchanged, what follows is
/// relayed unlogged, and the conversation's log ends with `logged`.
fn bad_input(bad: &[u8], line: &str, logged: &[&str]) -> anyhow::Result<()> {
    let mut peers = Scripted::start(Yahoo::new(), "")?;
    let before = peers.protocol.message("before");
    client_sends(&mut peers, &before)?;
    peers.client.send(bad)?;
    peers.server.expect(bad)?;
    peers.ims.wait_output(&format!("Yahoo: {line}"))?;
    let after = peers.protocol.message("after");
    peers.client.send(&after)?;
    peers.server.expect(&after)?;
    let reply = yahoo::incoming_message(BOB, b"still here", true);
    peers.server.send(&reply)?;
    peers.client.expect(&reply)?;
    // Time for a log line of what followed, if there wrongly were one.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut want = vec!["1,1,0,,before".to_string()];
    want.extend(logged.iter().map(|l| l.to_string()));
    assert_eq!(log(&peers, BOB, want.len())?, want);
    assert!(
        peers.ims.process.child.try_wait()?.is_none(),
        "the daemon is still running"
    );
    Ok(())
}

/// A stop for malformed input, as the daemon prints it.
fn malformed(len: usize, why: &str) -> String {
    format!(
        "YMSG packet of service 0x06 ({len} bytes) is malformed: {why}; \
         relaying the rest of this connection untouched"
    )
}

/// Set a packet's length field.
fn with_len(mut packet: Vec<u8>, len: usize) -> Vec<u8> {
    packet[8..10].copy_from_slice(&(len as u16).to_be_bytes());
    packet
}

#[test]
fn a_pair_without_its_separator_stops_inspection_and_is_relayed() -> anyhow::Result<()> {
    let mut bad = Yahoo::new().message("hello");
    // Drop the separator after the last value; the length follows.
    bad.truncate(bad.len() - 2);
    let len = bad.len();
    let bad = with_len(bad, len - yahoo::HEADER_LEN);
    bad_input(
        &bad,
        &malformed(len, "the value of key 206 has no separator"),
        &[],
    )
}

#[test]
fn a_huge_key_count_is_logged_as_uninspectable_and_relayed() -> anyhow::Result<()> {
    let pairs: Vec<(u32, &[u8])> = (0..5000).map(|_| (5, &b"bob"[..])).collect();
    let bad = yahoo::Packet::new(yahoo::service::MESSAGE, 0, &pairs).encode();
    let why = format!(
        "YMSG packet of service 0x06 ({} bytes) with more than 4096 key/value pairs: \
         too large to inspect; the rest of the connection is relayed without inspection or logging",
        bad.len()
    );
    bad_input(
        &bad,
        &why,
        &[&format!(
            "1,1,0,uninspectable;,[IMSpector: inspection stopped: {why}]"
        )],
    )
}

#[test]
fn a_length_past_the_end_stops_inspection_and_is_relayed() -> anyhow::Result<()> {
    let mut y = Yahoo::new();
    let first = y.message("short");
    let len = first.len() - yahoo::HEADER_LEN + 12;
    let mut bad = with_len(first, len);
    bad.extend(y.message("next"));
    bad_input(
        &bad,
        &malformed(len + yahoo::HEADER_LEN, "key/value pair 8 has no separator"),
        &[],
    )
}
