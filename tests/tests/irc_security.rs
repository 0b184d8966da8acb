//! IRC attacks from the local side, against both servers that read a bare CR
//! differently (ngircd ends the line there, InspIRCd drops the CR): every
//! PRIVMSG or NOTICE the server delivers is logged and judged.
//!
//! The attacker is a raw TCP client in the client namespace (no IRC client
//! sends a bare CR); the victim is ii next to the server.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

use imspector_e2e::imspector::LogLine;
use imspector_e2e::irc::{Ii, Inspircd, Ngircd};
use imspector_e2e::{prometheus, wait, Imspector, Rig};

/// A raw IRC connection through the gateway, registered as `nick`.
struct Raw {
    conn: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Raw {
    fn connect(rig: &Rig, nick: &str) -> anyhow::Result<Self> {
        let server = SocketAddr::from((rig.server_ip, 6667));
        let conn = rig.client.run(move || TcpStream::connect(server))??;
        conn.set_read_timeout(Some(wait::DEADLINE))?;
        let mut raw = Raw {
            reader: BufReader::new(conn.try_clone()?),
            conn,
        };
        raw.send(format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n").as_bytes())?;
        raw.read_until(" 376 ")?;
        Ok(raw)
    }

    fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.conn.write_all(bytes)?;
        Ok(())
    }

    /// Read lines (answering PINGs) until one contains `what`.
    fn read_until(&mut self, what: &str) -> anyhow::Result<String> {
        let mut line = String::new();
        loop {
            line.clear();
            anyhow::ensure!(
                self.reader.read_line(&mut line)? > 0,
                "closed before {what:?}"
            );
            if let Some(token) = line.strip_prefix("PING ") {
                self.send(format!("PONG {token}").as_bytes())?;
            }
            if line.contains(what) {
                return Ok(line);
            }
        }
    }
}

const CONFIG: &str = "irc_protocol=on\n";
const METRICS: &str = "127.0.0.1:9168";

fn attacks_are_logged_and_judged(
    start_server: impl Fn(&Rig) -> anyhow::Result<Box<dyn std::any::Any>>,
) -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&[6667], 16667)?;
    let dir = rig.subdir("files")?;
    let acl = dir.join("acl.txt");
    std::fs::write(&acl, "deny mallory victim\ndeny mallory #forbidden\n")?;
    let words = dir.join("badwords.txt");
    std::fs::write(&words, "darn\n")?;
    let config = format!(
        "{CONFIG}acl_filename={}\nbadwords_filename={}\nresponder_filename={}\nfiltered_mins=15\n",
        acl.display(),
        words.display(),
        dir.join("responder.db").display()
    );
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, &config)?;
    let _server = start_server(&rig)?;
    let clients = rig.subdir("clients")?;
    let victim = Ii::remote(&rig, &clients, "victim")?;
    victim.join("#ok")?;
    victim.join("#forbidden")?;
    let mut mallory = Raw::connect(&rig, "mallory")?;
    mallory.send(b"JOIN #ok\r\nJOIN #forbidden\r\n")?;
    mallory.read_until("JOIN :#forbidden")?;

    // ngircd delivers a PRIVMSG after the PING to the victim the ACL denies.
    mallory.send(b"PING :x\rPRIVMSG victim :secret one\n")?;
    // ngircd: "hi" to #ok and the text to #forbidden; InspIRCd: one line to #ok.
    mallory.send(b"PRIVMSG #ok :hi\rPRIVMSG #forbidden :secret two\n")?;
    // InspIRCd joins the halves into a bad word.
    mallory.send(b"PRIVMSG #ok :da\rrn\r\n")?;
    // That line cannot be rewritten: it is blocked, and mallory is told.
    let notice = mallory.read_until("NOTICE #ok :")?;
    assert!(notice.contains("was blocked (****)"), "{notice:?}");
    // Bytes that are not UTF-8 cannot carry the censored text: blocked too
    // (the notice was given for #ok within filtered_mins already).
    mallory.send(b"PRIVMSG #ok :darn caf\xe9\r\n")?;
    mallory.send(b"PRIVMSG #ok :after the attacks\r\n")?;
    victim.wait_received("#ok", "mallory", "after the attacks")?;

    for chat in ["mallory", "#ok", "#forbidden"] {
        let window = victim.window(chat);
        for leaked in ["secret", "hi", "da", "darn caf"] {
            assert!(
                !window
                    .lines()
                    .any(|l| l.contains(&format!("<mallory> {leaked}"))),
                "{chat} got {leaked:?}:\n{window}"
            );
        }
    }
    let rest = |lines: Vec<imspector_e2e::imspector::LogLine>| -> Vec<String> {
        lines.into_iter().map(|l| l.rest).collect()
    };
    assert_eq!(
        rest(ims.wait_log("IRC", "mallory", "victim", 1)?),
        ["1,1,1,,secret one"]
    );
    assert_eq!(
        rest(ims.wait_log("IRC", "mallory", "#forbidden", 1)?),
        ["1,1,1,,secret two"]
    );
    // Each reading of a line is logged; a line goes to all its targets or to none.
    assert_eq!(
        rest(ims.wait_log("IRC", "mallory", "#ok", 6)?),
        [
            "1,1,1,,hiPRIVMSG #forbidden :secret two",
            "1,1,1,,hi",
            "1,1,1,1 badwords;,darn",
            "1,1,1,,da",
            "1,1,1,1 badwords;,darn café",
            "1,1,0,,after the attacks",
        ]
    );
    Ok(())
}

#[test]
fn bare_cr_attacks_through_ngircd() -> anyhow::Result<()> {
    attacks_are_logged_and_judged(|rig| {
        Ok(Box::new(Ngircd::start(
            &rig.server,
            &rig.subdir("ngircd")?,
        )?))
    })
}

#[test]
fn bare_cr_attacks_through_inspircd() -> anyhow::Result<()> {
    attacks_are_logged_and_judged(|rig| {
        Ok(Box::new(Inspircd::start(
            &rig.server,
            &rig.subdir("inspircd")?,
        )?))
    })
}

#[test]
fn a_line_too_long_to_inspect_is_logged_in_its_conversation() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&[6667], 16667)?;
    let config = format!("{CONFIG}metrics_listen={METRICS}\n");
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, &config)?;
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let oversized = |to: &str| {
        let mut line = format!("PRIVMSG {to} :").into_bytes();
        line.resize(70 * 1024, b'a');
        line
    };
    let mut mallory = Raw::connect(&rig, "mallory")?;
    mallory.send(&oversized("victim"))?;
    let stopped = "IRC line longer than 64 KiB: too large to inspect";
    let logged = ims.wait_log("IRC", "mallory", "victim", 1)?;
    assert_eq!(
        logged[0].rest,
        format!("1,1,0,uninspectable;,[IMSpector: inspection stopped: {stopped}; the rest of the connection is relayed without inspection or logging]")
    );
    ims.wait_output(&format!("{stopped}; the rest of the connection is relayed"))?;
    let stops = prometheus::scrape(&rig.gateway, METRICS.parse()?)?.value(
        "imspector_parser_stops_total",
        &[("protocol", "IRC"), ("reason", "too_large")],
    );
    assert_eq!(stops, Some(1.0));

    // A site that wants no unlogged chat closes such connections instead.
    drop(ims);
    let config = format!("{CONFIG}uninspectable=close\n");
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims-close")?, &config)?;
    let mut mallory = Raw::connect(&rig, "mallory2")?;
    mallory.send(&oversized("#chan"))?;
    let logged = ims.wait_log("IRC", "mallory2", "#chan", 1)?;
    assert_eq!(
        logged[0].rest,
        format!("1,1,1,uninspectable;,[IMSpector: inspection stopped: {stopped}; the connection is closed]")
    );
    let closed = mallory.read_until("never sent");
    assert!(
        closed
            .as_ref()
            .is_err_and(|e| e.to_string().contains("closed before")),
        "{closed:?}"
    );
    Ok(())
}

#[test]
fn topics_reasons_ctcp_and_every_target_are_logged_and_judged() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&[6667], 16667)?;
    let dir = rig.subdir("files")?;
    let words = dir.join("badwords.txt");
    std::fs::write(&words, "darn\n")?;
    let acl = dir.join("acl.txt");
    std::fs::write(&acl, "deny mallory victim\n")?;
    let config = format!(
        "{CONFIG}badwords_filename={}\nacl_filename={}\n",
        words.display(),
        acl.display()
    );
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, &config)?;
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let victim = Ii::remote(&rig, &rig.subdir("clients")?, "victim")?;
    victim.join("#ok")?;
    let mut mallory = Raw::connect(&rig, "mallory")?;
    mallory.send(b"JOIN #ok\r\n")?;
    mallory.read_until("JOIN :#ok")?;
    mallory.send(b"TOPIC #ok :darn topic\r\n")?;
    mallory.send(b"NOTICE #ok :\x01VERSION darn client\x01\r\n")?;
    mallory.send(b"PRIVMSG #ok :\x01\x01ACTION darn\x01\r\n")?;
    // One target denied: the line goes to nobody, and each target's log says so.
    mallory.send(b"PRIVMSG #ok,victim :to both\r\n")?;
    mallory.send(b"PRIVMSG #ok :\x1b[2J\x1b]0;owned\x07 hi\r\n")?;
    mallory.send(b"PART #ok :darn you all\r\n")?;
    mallory.send(b"QUIT :darn again\r\n")?;
    let rest = |lines: Vec<LogLine>| -> Vec<String> { lines.into_iter().map(|l| l.rest).collect() };
    // What mallory sent; the server's echoes of it show the censored text.
    let path = ims.log_file("IRC", "mallory", "#ok");
    let (sent, echoed): (Vec<String>, Vec<String>) = wait::until("mallory's lines", || {
        let lines = rest(wait::read(&path).lines().map(LogLine::parse).collect());
        let (sent, echoed): (Vec<String>, Vec<String>) =
            lines.into_iter().partition(|l| l.starts_with("1,"));
        (sent.len() >= 6).then_some((sent, echoed))
    })?;
    assert!(echoed.iter().all(|l| !l.contains("darn")), "{echoed:?}");
    assert_eq!(
        sent,
        [
            "1,1,0,1 badwords;,/topic darn topic",
            "1,1,0,1 badwords;,/ctcp VERSION darn client",
            "1,1,0,1 badwords;,/ctcp \\x01ACTION darn",
            "1,1,1,,to both",
            "1,1,0,,\\x1b[2J\\x1b]0;owned\\x07 hi",
            "1,1,0,1 badwords;,/part darn you all",
        ]
    );
    assert_eq!(
        rest(ims.wait_log("IRC", "mallory", "victim", 1)?),
        ["1,1,1,,to both"]
    );
    assert_eq!(
        rest(ims.wait_log("IRC", "mallory", "*", 1)?),
        ["1,1,0,1 badwords;,/quit darn again"]
    );
    // The victim saw the censored texts only (ii does not show a part's reason).
    wait::until("mallory's part", || {
        victim.window("#ok").contains("has left #ok").then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}:\n{}", victim.window("#ok")))?;
    let seen = victim.window("#ok");
    assert!(seen.contains("changed topic to \"**** topic\""), "{seen}");
    assert!(seen.contains("VERSION **** client"), "{seen}");
    assert!(
        !seen.contains("darn") && !seen.contains("to both"),
        "{seen}"
    );
    Ok(())
}
