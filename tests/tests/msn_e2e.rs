//! MSN through the real daemon in the namespace rig, with a scripted MSNP8
//! switchboard session on both ends (no MSN client or server runs here). The
//! ends decode strictly, so every frame the proxy rewrote must still be valid.

use imspector::filter::testing;
use imspector_e2e::scripted::msn::{self, Msn, ALICE, BOB};
use imspector_e2e::scripted::{Item, Scripted, ScriptedFilterRig, ScriptedProtocol};
use imspector_e2e::wait;

const CAROL: &str = "carol@example.com";

/// The `rest` of each log line (`outgoing,type,filtered,categories,data`).
fn log(peers: &Scripted<Msn>, remote: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let lines = peers.ims.wait_log("MSN", ALICE, remote, count)?;
    Ok(lines.into_iter().map(|l| l.rest).collect())
}

/// Alice sends `bytes`; returns the frames the server received before the marker.
fn client_sends(peers: &mut Scripted<Msn>, bytes: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    peers.client.send(bytes)?;
    let (at_server, at_client) = peers.sync()?;
    anyhow::ensure!(at_client.is_empty(), "alice got {at_client:?}");
    Ok(at_server.into_iter().map(|f| f.raw).collect())
}

/// The server relays `bytes` to alice, who must receive them unchanged.
fn server_relays(peers: &mut Scripted<Msn>, bytes: &[u8]) -> anyhow::Result<()> {
    peers.server.send(bytes)?;
    let frame = peers.client_frame()?;
    assert_eq!(
        String::from_utf8_lossy(&frame.raw),
        String::from_utf8_lossy(bytes)
    );
    Ok(())
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[test]
fn filter_scenarios_through_a_scripted_msn_switchboard() -> anyhow::Result<()> {
    let mut rig = ScriptedFilterRig::start(Msn::new())?;
    let dir = rig.peers.rig.subdir("scenarios")?;
    testing::run_all(&mut rig, &dir);
    Ok(())
}

#[test]
fn typing_is_logged_and_relayed_unchanged() -> anyhow::Result<()> {
    let mut peers = Scripted::start(Msn::new(), "log_typing_events=on\n")?;
    let typing = peers.protocol.typing();
    assert_eq!(client_sends(&mut peers, &typing)?, vec![typing]);
    server_relays(&mut peers, &msn::incoming_typing(BOB, "Bob"))?;
    let hello = peers.protocol.message("hello");
    assert_eq!(client_sends(&mut peers, &hello)?, vec![hello]);
    assert_eq!(log(&peers, BOB, 3)?, ["1,3,0,,", "0,3,0,,", "1,1,0,,hello"]);
    Ok(())
}

#[test]
fn typing_is_not_logged_by_default() -> anyhow::Result<()> {
    let mut peers = Scripted::start(Msn::new(), "")?;
    let typing = peers.protocol.typing();
    assert_eq!(client_sends(&mut peers, &typing)?, vec![typing]);
    let hello = peers.protocol.message("hello");
    assert_eq!(client_sends(&mut peers, &hello)?, vec![hello]);
    assert_eq!(log(&peers, BOB, 1)?, ["1,1,0,,hello"]);
    Ok(())
}

#[test]
fn file_invitation_is_logged_then_blocked() -> anyhow::Result<()> {
    let mut peers = Scripted::start(Msn::new(), "")?;
    let invite = peers.protocol.file_invitation("holiday.jpg", 48213);
    assert_eq!(client_sends(&mut peers, &invite)?, vec![invite]);

    peers.ims.reload("msn_protocol=on\nblock_files=on\n")?;
    let invite = peers.protocol.file_invitation("holiday.jpg", 48213);
    assert_eq!(client_sends(&mut peers, &invite)?, Vec::<Vec<u8>>::new());
    // The switchboard session goes on.
    let text = peers.protocol.message("still here");
    assert_eq!(client_sends(&mut peers, &text)?, vec![text]);
    assert_eq!(
        log(&peers, BOB, 3)?,
        [
            "1,2,0,,holiday.jpg 48213 bytes",
            "1,2,1,,holiday.jpg 48213 bytes",
            "1,1,0,,still here",
        ]
    );
    Ok(())
}

/// Alice sends `text`; returns what the server received and the notices alice got.
fn send_text(peers: &mut Scripted<Msn>, text: &str) -> anyhow::Result<(Vec<Item>, Vec<Item>)> {
    let bytes = peers.protocol.message(text);
    peers.client.send(&bytes)?;
    let (at_server, at_client) = peers.sync()?;
    let items =
        |frames: Vec<imspector_e2e::scripted::Frame>| frames.into_iter().map(|f| f.item).collect();
    Ok((items(at_server), items(at_client)))
}

fn text(from: Option<&str>, text: &str) -> Item {
    Item::Text {
        from: from.map(str::to_string),
        text: text.to_string(),
    }
}

#[test]
fn a_second_participant_makes_a_group_chat() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = format!(
        "responder_filename={}\nnotice_days=7\n",
        dir.path().join("responder.db").display()
    );
    let mut peers = Scripted::start(Msn::new(), &config)?;
    let notice = "Message from IMSpector: -=Your activities are being logged=-";
    assert_eq!(
        send_text(&mut peers, "hi bob")?,
        (vec![text(None, "hi bob")], vec![text(Some(BOB), notice)])
    );

    let before = unix_now();
    server_relays(&mut peers, &msn::joi(CAROL, "Carol"))?;
    let after = unix_now();
    // The group chat is a new conversation: its notice comes with its first
    // message and shows in the same window, from the first participant.
    let hello = msn::incoming_text(CAROL, "Carol", "hello alice");
    peers.server.send(&hello)?;
    assert_eq!(peers.client_frame()?.item, text(Some(BOB), notice));
    assert_eq!(peers.client_frame()?.raw, hello);
    server_relays(&mut peers, &msn::incoming_text(BOB, "Bob", "hi all"))?;
    assert_eq!(
        send_text(&mut peers, "hello both")?,
        (vec![text(None, "hello both")], vec![])
    );

    let chats = peers.ims.log_dir.join("MSN").join(ALICE);
    let group = wait::until("the group chat's log directory", || {
        std::fs::read_dir(&chats)
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .find(|name| name.starts_with("groupchat-"))
    })?;
    let formed: i64 = group["groupchat-".len()..].parse()?;
    assert!(
        (before..=after).contains(&formed),
        "{group} not named after the time carol joined ({before}..={after})"
    );
    assert_eq!(log(&peers, BOB, 1)?, ["1,1,0,,hi bob"]);
    assert_eq!(
        log(&peers, &group, 3)?,
        [
            "0,1,0,,carol@example.com: hello alice",
            "0,1,0,,bob@example.com: hi all",
            "1,1,0,,hello both",
        ]
    );
    Ok(())
}

#[test]
fn incoming_rewrite_stays_a_valid_frame() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("regex.txt");
    std::fs::write(&rules, "(?i)\\bcolou?r\\b => shade of hue\n")?;
    let config = format!("regex_filename={}\n", rules.display());
    let mut peers = Scripted::start(Msn::new(), &config)?;
    peers
        .server
        .send(&msn::incoming_text(BOB, "Bob", "nice colour!"))?;
    let frame = peers.client_frame()?;
    assert_eq!(
        frame.item,
        Item::Text {
            from: Some(BOB.into()),
            text: "nice shade of hue!".into()
        }
    );
    assert_eq!(log(&peers, BOB, 1)?, ["0,1,0,,nice colour!"]);
    Ok(())
}
