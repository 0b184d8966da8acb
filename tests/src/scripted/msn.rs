//! A scripted MSNP8 switchboard session: alice (the local client) calls bob
//! into a switchboard and chats. The decoders here are the test's own and
//! stricter than the protocol: command lines end in CR LF and have single
//! spaces, payload lengths must match the MIME message exactly, and a text
//! body is one line of UTF-8 (the scripted users never send line breaks, so a
//! line break in a body means a length field moved the end of a frame).

use super::{Decoded, Item, ScriptedProtocol};
use crate::replay::Sender;

pub const ALICE: &str = "alice@example.com";
pub const BOB: &str = "bob@example.com";
pub const PORT: u16 = 1863;

/// Longer lines or payloads are malformed here (MSN itself allows 1664 payload bytes).
const MAX_LINE: usize = 1024;
const MAX_PAYLOAD: usize = 8192;

const TEXT_HEADERS: &str = "Content-Type: text/plain; charset=UTF-8\r\n\
                            X-MMS-IM-Format: FN=Segoe%20UI; EF=; CO=0; CS=1; PF=0\r\n";
const NUDGE: &str = "ID: 1\r\n\r\n";

/// The switchboard session, counting the client's transaction ids.
#[derive(Debug, Default)]
pub struct Msn {
    trid: u32,
}

impl Msn {
    pub fn new() -> Self {
        Self::default()
    }

    fn next_trid(&mut self) -> u32 {
        self.trid += 1;
        self.trid
    }

    /// A client `MSG trid ack len` with a MIME payload.
    fn outgoing(&mut self, ack: char, headers: &str, body: &str) -> Vec<u8> {
        let payload = mime(headers, body);
        let trid = self.next_trid();
        format!("MSG {trid} {ack} {}\r\n{payload}", payload.len()).into_bytes()
    }

    /// Alice's "is typing" notification.
    pub fn typing(&mut self) -> Vec<u8> {
        self.outgoing(
            'U',
            &format!("Content-Type: text/x-msmsgscontrol\r\nTypingUser: {ALICE}\r\n"),
            "\r\n",
        )
    }

    /// Alice offers bob a file (the MSNP8 invitation).
    pub fn file_invitation(&mut self, name: &str, size: u64) -> Vec<u8> {
        let body = format!(
            "Application-Name: File Transfer\r\n\
             Application-GUID: {{5D3E02AB-6190-11D3-BBBB-00C04F795683}}\r\n\
             Invitation-Command: INVITE\r\n\
             Invitation-Cookie: 28461\r\n\
             Application-File: {name}\r\n\
             Application-FileSize: {size}\r\n\
             Connectivity: N\r\n\r\n"
        );
        self.outgoing(
            'N',
            "Content-Type: text/x-msmsgsinvite; charset=UTF-8\r\n",
            &body,
        )
    }
}

/// A MIME message as MSN clients write it.
fn mime(headers: &str, body: &str) -> String {
    format!("MIME-Version: 1.0\r\n{headers}\r\n{body}")
}

/// `MSG email nick len`: a message the switchboard relays from `from`.
pub fn incoming_text(from: &str, nick: &str, text: &str) -> Vec<u8> {
    incoming(from, nick, &mime(TEXT_HEADERS, text))
}

/// `from` is typing.
pub fn incoming_typing(from: &str, nick: &str) -> Vec<u8> {
    let headers = format!("Content-Type: text/x-msmsgscontrol\r\nTypingUser: {from}\r\n");
    incoming(from, nick, &mime(&headers, "\r\n"))
}

fn incoming(from: &str, nick: &str, payload: &str) -> Vec<u8> {
    format!("MSG {from} {nick} {}\r\n{payload}", payload.len()).into_bytes()
}

/// Someone joins the switchboard.
pub fn joi(email: &str, nick: &str) -> Vec<u8> {
    format!("JOI {email} {nick}\r\n").into_bytes()
}

impl ScriptedProtocol for Msn {
    fn log_name(&self) -> &'static str {
        "MSN"
    }

    fn port(&self) -> u16 {
        PORT
    }

    fn config(&self) -> String {
        "msn_protocol=on\n".into()
    }

    fn ids(&self) -> (String, String) {
        (ALICE.into(), BOB.into())
    }

    fn login(&mut self) -> Vec<(Sender, Vec<u8>)> {
        let usr = self.next_trid();
        let cal = self.next_trid();
        vec![
            (
                Sender::Client,
                format!("USR {usr} {ALICE} 17262740.1050826919.32308\r\n").into_bytes(),
            ),
            (
                Sender::Server,
                format!("USR {usr} OK {ALICE} Alice\r\n").into_bytes(),
            ),
            (Sender::Client, format!("CAL {cal} {BOB}\r\n").into_bytes()),
            (
                Sender::Server,
                [
                    format!("CAL {cal} RINGING 17262740\r\n").into_bytes(),
                    joi(BOB, "Bob"),
                ]
                .concat(),
            ),
        ]
    }

    fn message(&mut self, text: &str) -> Vec<u8> {
        self.outgoing('N', TEXT_HEADERS, text)
    }

    /// A nudge asking for an acknowledgement: no chat event, and the
    /// switchboard's `ACK trid` tells the client it arrived.
    fn marker(&mut self) -> Vec<u8> {
        self.outgoing('A', "Content-Type: text/x-msnmsgr-datacast\r\n", NUDGE)
    }

    fn marker_reply(&mut self, id: &str) -> Vec<u8> {
        format!("ACK {id}\r\n").into_bytes()
    }

    fn decode_at_server(&self, buf: &[u8]) -> Decoded {
        let Some((end, tokens)) = command_line(buf)? else {
            return Ok(None);
        };
        match tokens.as_slice() {
            ["MSG", trid, ack, len] => {
                number(trid)?;
                if !["U", "N", "A", "D"].contains(ack) {
                    return Err(format!("acknowledgement mode {ack:?}"));
                }
                let Some((total, mime)) = payload(buf, end, len)? else {
                    return Ok(None);
                };
                let item = match mime.content(None)? {
                    Item::Other(nudge) if nudge == "nudge" => Item::Marker(trid.to_string()),
                    item => item,
                };
                Ok(Some((total, item)))
            }
            ["USR" | "CAL" | "ANS" | "OUT", ..] => Ok(Some((end, Item::Other(tokens.join(" "))))),
            _ => Err(format!(
                "a client command the switchboard does not know: {tokens:?}"
            )),
        }
    }

    fn decode_at_client(&self, buf: &[u8]) -> Decoded {
        let Some((end, tokens)) = command_line(buf)? else {
            return Ok(None);
        };
        match tokens.as_slice() {
            ["MSG", from, _nick, len] => {
                if !from.contains('@') {
                    return Err(format!("sender {from:?} is no address"));
                }
                let Some((total, mime)) = payload(buf, end, len)? else {
                    return Ok(None);
                };
                Ok(Some((total, mime.content(Some(from))?)))
            }
            ["ACK", trid] => {
                number(trid)?;
                Ok(Some((end, Item::Marker(trid.to_string()))))
            }
            ["USR" | "CAL" | "JOI" | "IRO" | "BYE" | "NAK", ..] => {
                Ok(Some((end, Item::Other(tokens.join(" ")))))
            }
            _ => Err(format!(
                "a switchboard command the client does not know: {tokens:?}"
            )),
        }
    }
}

/// One command line: its length with CR LF, and its tokens.
fn command_line(buf: &[u8]) -> Result<Option<(usize, Vec<&str>)>, String> {
    let Some(lf) = buf.iter().take(MAX_LINE).position(|&b| b == b'\n') else {
        if buf.len() >= MAX_LINE {
            return Err("command line too long".into());
        }
        return Ok(None);
    };
    let line = buf[..lf]
        .strip_suffix(b"\r")
        .ok_or("command line ends in a bare LF")?;
    let line = std::str::from_utf8(line).map_err(|_| "command line is not UTF-8")?;
    let tokens: Vec<&str> = line.split(' ').collect();
    if tokens
        .iter()
        .any(|t| t.is_empty() || t.chars().any(char::is_control))
    {
        return Err(format!(
            "command line {line:?} is not single-space separated"
        ));
    }
    if !tokens[0].chars().all(|c| c.is_ascii_uppercase()) || tokens[0].len() != 3 {
        return Err(format!("{:?} is no command", tokens[0]));
    }
    Ok(Some((lf + 1, tokens)))
}

fn number(token: &str) -> Result<usize, String> {
    let canonical = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    canonical
        .then(|| token.parse().ok())
        .flatten()
        .ok_or_else(|| format!("{token:?} is not a number"))
}

/// The MIME payload after a command line ending at `line_end`, once complete:
/// the whole frame's length and the parsed message.
fn payload<'a>(
    buf: &'a [u8],
    line_end: usize,
    len: &str,
) -> Result<Option<(usize, Mime<'a>)>, String> {
    let len = number(len)?;
    if len > MAX_PAYLOAD {
        return Err(format!("payload length {len}"));
    }
    let total = line_end + len;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((total, Mime::parse(&buf[line_end..total])?)))
}

/// A MIME message: `Name: value` lines (MIME-Version first), a blank line, a body.
struct Mime<'a> {
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
}

impl<'a> Mime<'a> {
    fn parse(payload: &'a [u8]) -> Result<Self, String> {
        let split = payload
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("MIME headers without a blank line")?;
        let block =
            std::str::from_utf8(&payload[..split]).map_err(|_| "MIME headers are not UTF-8")?;
        let headers = header_block(block)?;
        if headers.first() != Some(&("MIME-Version", "1.0")) {
            return Err("MIME-Version: 1.0 is not the first header".into());
        }
        Ok(Mime {
            headers,
            body: &payload[split + 4..],
        })
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        lookup(&self.headers, name)
    }

    /// What the message is; `from` is the sender named by the command line.
    fn content(&self, from: Option<&str>) -> Result<Item, String> {
        let content_type = self.get("Content-Type").ok_or("no Content-Type")?;
        let mut params = content_type.split("; ");
        let media = params.next().unwrap_or_default();
        let charset = params.find_map(|p| p.strip_prefix("charset="));
        let body = std::str::from_utf8(self.body).map_err(|_| "body is not UTF-8")?;
        match media {
            "text/plain" => {
                if !charset.is_some_and(|c| c.eq_ignore_ascii_case("UTF-8")) {
                    return Err(format!("text in charset {charset:?}"));
                }
                if body.contains(['\r', '\n', '\0']) {
                    return Err(format!("text body {body:?} runs into another frame"));
                }
                Ok(Item::Text {
                    from: from.map(str::to_string),
                    text: body.to_string(),
                })
            }
            "text/x-msmsgscontrol" => {
                let user = self.get("TypingUser").ok_or("control without TypingUser")?;
                if body != "\r\n" {
                    return Err(format!("typing body {body:?}"));
                }
                Ok(Item::Other(format!("typing {user}")))
            }
            "text/x-msnmsgr-datacast" if body == NUDGE => Ok(Item::Other("nudge".into())),
            "text/x-msmsgsinvite" => {
                let fields = body
                    .strip_suffix("\r\n\r\n")
                    .ok_or("invitation without its blank line")?;
                let fields = header_block(fields)?;
                let field =
                    |name| lookup(&fields, name).ok_or(format!("invitation without {name}"));
                Ok(Item::Other(format!(
                    "{} {} {}",
                    field("Invitation-Command")?,
                    field("Application-File")?,
                    field("Application-FileSize")?
                )))
            }
            _ => Err(format!("content {content_type:?} with body {body:?}")),
        }
    }
}

fn header_block(block: &str) -> Result<Vec<(&str, &str)>, String> {
    block
        .split("\r\n")
        .map(|line| {
            let (name, value) = line
                .split_once(": ")
                .ok_or(format!("header line {line:?}"))?;
            let token =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !token || value.contains('\n') {
                return Err(format!("header line {line:?}"));
            }
            Ok((name, value))
        })
        .collect()
}

fn lookup<'a>(headers: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_server(bytes: &[u8]) -> Decoded {
        Msn::new().decode_at_server(bytes)
    }

    #[test]
    fn decodes_what_the_client_sends() {
        let mut msn = Msn::new();
        let msg = msn.message("hi there");
        assert_eq!(
            at_server(&msg),
            Ok(Some((
                msg.len(),
                Item::Text {
                    from: None,
                    text: "hi there".into()
                }
            )))
        );
        assert_eq!(at_server(&msg[..msg.len() - 1]), Ok(None));
        let marker = msn.marker();
        assert_eq!(
            at_server(&marker),
            Ok(Some((marker.len(), Item::Marker("2".into()))))
        );
        let typing = msn.typing();
        assert_eq!(
            at_server(&typing).unwrap().unwrap().1,
            Item::Other(format!("typing {ALICE}"))
        );
        let invite = msn.file_invitation("a.jpg", 12);
        assert_eq!(
            at_server(&invite).unwrap().unwrap().1,
            Item::Other("INVITE a.jpg 12".into())
        );
    }

    #[test]
    fn rejects_wrong_length_fields() {
        let mut msn = Msn::new();
        let msg = String::from_utf8(msn.message("hello")).unwrap();
        let marker = String::from_utf8(msn.marker()).unwrap();
        let payload = msg.split_once("\r\n").unwrap().1;
        let len = payload.len();
        let with_len = |n: usize| format!("MSG 1 N {n}\r\n{payload}{marker}").into_bytes();
        // One byte short: the rest of the body is no command.
        let short = with_len(len - 1);
        let (first, _) = at_server(&short).unwrap().unwrap();
        assert!(at_server(&short[first..]).is_err());
        // Too long: the body runs into the marker.
        assert!(at_server(&with_len(len + 12)).is_err());
        assert!(at_server(&with_len(len)).is_ok());
        // Double spaces and bare LFs.
        assert!(at_server(format!("MSG 1  N {len}\r\n{payload}").as_bytes()).is_err());
        assert!(at_server(format!("MSG 1 N {len}\n{payload}").as_bytes()).is_err());
    }

    #[test]
    fn decodes_what_the_client_receives() {
        let msn = Msn::new();
        let notice = incoming_text(BOB, "IMSpector", "logged");
        assert_eq!(
            msn.decode_at_client(&notice),
            Ok(Some((
                notice.len(),
                Item::Text {
                    from: Some(BOB.into()),
                    text: "logged".into()
                }
            )))
        );
        assert_eq!(
            msn.decode_at_client(b"ACK 7\r\n"),
            Ok(Some((7, Item::Marker("7".into()))))
        );
        assert!(msn.decode_at_client(b"XYZ 7\r\n").is_err());
    }
}
