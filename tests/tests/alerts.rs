//! Keyword alerts end to end: real IRC chat through the rig raises alerts
//! that a local HTTP receiver (Python's http.server, failing the first POST
//! so that the retry shows) and a command that appends to a file receive,
//! at most one per conversation within `alert_mins`.

use std::net::IpAddr;
use std::path::Path;

use imspector_e2e::irc::{Ii, Ngircd};
use imspector_e2e::process::Process;
use imspector_e2e::{wait, Imspector, Rig};
use serde_json::Value;

const PORT: u16 = 16667;
const HOOK_PORT: u16 = 18080;

/// Answers 503 to the first POST and 200 to the others; writes a line per
/// POST: the status it answered, the path, the content type, the body.
const RECEIVER: &str = r#"
import http.server, sys
out = sys.argv[1]
class Hook(http.server.BaseHTTPRequestHandler):
    posts = 0
    def do_POST(self):
        body = self.rfile.read(int(self.headers['Content-Length']))
        Hook.posts += 1
        status = 503 if Hook.posts == 1 else 200
        with open(out, 'ab') as f:
            f.write(b'%d %s %s %s\n' % (status, self.path.encode(),
                self.headers['Content-Type'].encode(), body.rstrip(b'\n')))
        self.send_response(status)
        self.send_header('Content-Length', '0')
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(('127.0.0.1', int(sys.argv[2])), Hook)
print('ready', flush=True)
server.serve_forever()
"#;

fn lines(path: &Path, at_least: usize) -> anyhow::Result<Vec<String>> {
    wait::until(&format!("{at_least} lines in {}", path.display()), || {
        let text = wait::read(path);
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        (lines.len() >= at_least).then_some(lines)
    })
}

/// The alert's JSON, checked for what every alert of this test shares.
fn alert(json: &str, client_ip: &str) -> Value {
    let alert: Value = serde_json::from_str(json).expect("the alert is JSON");
    assert_eq!(alert["protocol"], "IRC");
    assert_eq!(alert["type"], "message");
    assert_eq!(alert["direction"], "out");
    assert_eq!(alert["local_id"], "alice");
    assert_eq!(alert["filtered"], false);
    let client = alert["client"].as_str().unwrap();
    assert!(client.starts_with(&format!("{client_ip}:")), "{client}");
    alert
}

#[test]
fn matching_messages_reach_the_webhook_and_the_command_once_per_conversation() -> anyhow::Result<()>
{
    let rig = Rig::new()?;
    rig.redirect(&[6667], PORT)?;
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let dir = rig.subdir("alerts")?;
    let posts = dir.join("posts");
    let commanded = dir.join("commanded.jsonl");
    let rules = dir.join("alerts.txt");
    std::fs::write(
        &rules,
        "# what security wants to know\nSecret Plan\n/card \\d{4}/\n",
    )?;

    let mut receiver = rig.gateway.command("python3");
    receiver
        .arg("-c")
        .arg(RECEIVER)
        .arg(&posts)
        .arg(HOOK_PORT.to_string());
    let receiver = Process::spawn("receiver", receiver, dir.join("receiver.out"))?;
    wait::until("the receiver to listen", || {
        receiver.output().contains("ready").then_some(())
    })?;

    let ims = Imspector::start(
        &rig.gateway,
        &rig.subdir("ims")?,
        &format!(
            "irc_protocol=on\nalert_filename={}\nalert_webhook=http://127.0.0.1:{HOOK_PORT}/hook?site=gw1\n\
             alert_command=cat >> {}\nalert_mins=60\n",
            rules.display(),
            commanded.display()
        ),
    )?;
    let clients = rig.subdir("clients")?;
    let bob = Ii::remote(&rig, &clients, "bob")?;
    let alice = Ii::local(&rig, &clients, IpAddr::V4(rig.server_ip), "alice")?;
    alice.join("#ops")?;
    bob.join("#ops")?;

    // Each is received before the next is sent, so their events are in order.
    alice.msg("bob", "the secret plan is ready")?;
    bob.wait_received("alice", "alice", "the secret plan is ready")?;
    // The same conversation within alert_mins: no second alert, either way.
    alice.msg("bob", "SECRET PLAN, part two")?;
    bob.wait_received("alice", "alice", "SECRET PLAN, part two")?;
    bob.msg("alice", "my card 1234 is yours")?;
    alice.wait_received("bob", "bob", "my card 1234 is yours")?;
    alice.msg("bob", "nothing to see")?;
    bob.wait_received("alice", "alice", "nothing to see")?;
    // Another conversation has an alert of its own.
    alice.say("#ops", "card 9876 for the secret plan")?;
    bob.wait_received("#ops", "alice", "card 9876 for the secret plan")?;

    let client_ip = rig.client_ip.to_string();
    let posted = lines(&posts, 3)?;
    let split: Vec<(&str, &str)> = posted
        .iter()
        .map(|l| {
            let (head, body) = l.split_at(l.find('{').expect("a JSON body"));
            (head.trim_end(), body)
        })
        .collect();
    // The first POST was answered 503 and sent again.
    assert_eq!(
        split.iter().map(|(head, _)| *head).collect::<Vec<_>>(),
        [
            "503 /hook?site=gw1 application/json",
            "200 /hook?site=gw1 application/json",
            "200 /hook?site=gw1 application/json",
        ]
    );
    assert_eq!(split[0].1, split[1].1);
    let first = alert(split[1].1, &client_ip);
    assert_eq!(first["remote_id"], "bob");
    assert_eq!(first["text"], "the secret plan is ready");
    assert_eq!(first["matched"], serde_json::json!(["Secret Plan"]));
    let second = alert(split[2].1, &client_ip);
    assert_eq!(second["remote_id"], "#ops");
    assert_eq!(second["text"], "card 9876 for the secret plan");
    assert_eq!(
        second["matched"],
        serde_json::json!(["Secret Plan", "/card \\d{4}/"])
    );

    let ran = lines(&commanded, 2)?;
    assert_eq!(ran.len(), 2, "{ran:?}");
    assert_eq!(serde_json::from_str::<Value>(&ran[0])?, first);
    assert_eq!(serde_json::from_str::<Value>(&ran[1])?, second);
    assert_eq!(wait::read(&posts).lines().count(), 3);

    let log = ims.wait_log("IRC", "alice", "bob", 4)?;
    assert_eq!(log[1].rest, "1,1,0,,SECRET PLAN, part two");
    Ok(())
}
