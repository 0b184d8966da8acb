//! What a message payload means: text, typing, a file or webcam invitation,
//! or something that is not a chat event. Shared by the MIME messages of
//! `MSG`/`UUM`/`UBM` and the MSNP21 `SDG` messages.

use std::ops::Range;

use super::mime::{self, Charset, Headers};
use super::p2p::{self, Version};

#[derive(Debug, PartialEq, Eq)]
pub enum Content {
    /// Text in `body` of the payload, in `charset`.
    Text {
        body: Range<usize>,
        charset: Charset,
    },
    Typing,
    /// A file transfer invitation: "NAME SIZE bytes".
    File(String),
    Webcam,
    /// A P2P chunk whose SLP bytes may (with earlier chunks) form an INVITE.
    P2p {
        version: Version,
        body: Range<usize>,
    },
    /// Nudges, ink, emoticons, datacasts, profiles, notifications...
    Other,
}

/// The payload of `MSG`, `UUM` and `UBM`: MIME headers, blank line, body.
pub fn of_mime(payload: &[u8]) -> Content {
    let Some((headers, body_start)) = mime::split_headers(payload) else {
        return Content::Other;
    };
    let body = body_start..payload.len();
    match headers.media_type().as_str() {
        "text/plain" => Content::Text {
            body,
            charset: headers.charset(),
        },
        "text/x-msmsgscontrol" if headers.get("TypingUser").is_some() => Content::Typing,
        "text/x-msmsgsinvite" => invitation(&payload[body]),
        "application/x-msnmsgrp2p" => {
            // From MSNP16 the P2P addresses carry the endpoint: `bob@x.com;{guid}`.
            let v2 = headers.get("P2P-Src").is_some()
                || headers.get("P2P-Dest").is_some_and(|d| d.contains(';'));
            let version = if v2 { Version::V2 } else { Version::V1 };
            Content::P2p { version, body }
        }
        _ => Content::Other,
    }
}

/// The old (MSNP2 to MSNP8 era) invitations, whose body is one more header block.
fn invitation(body: &[u8]) -> Content {
    let Some((fields, _)) = mime::split_headers(body) else {
        return Content::Other;
    };
    if !fields
        .get("Invitation-Command")
        .is_some_and(|c| c.eq_ignore_ascii_case("INVITE"))
    {
        return Content::Other;
    }
    if fields
        .get("Application-GUID")
        .is_some_and(p2p::is_webcam_guid)
    {
        return Content::Webcam;
    }
    match (
        fields.get("Application-File"),
        fields.get("Application-FileSize"),
    ) {
        (Some(name), Some(size)) => Content::File(format!("{name} {size} bytes")),
        (Some(name), None) => Content::File(name.to_string()),
        _ => Content::Other,
    }
}

/// An MSNP21 `SDG` payload: routing, reliability and messaging header blocks,
/// then the body.
#[derive(Debug)]
pub struct Sdg<'a> {
    pub routing: Headers<'a>,
    pub messaging: Headers<'a>,
    /// Where the messaging block starts and the body starts.
    pub messaging_at: usize,
    pub body_at: usize,
}

impl<'a> Sdg<'a> {
    pub fn parse(payload: &'a [u8]) -> Option<Self> {
        let (routing, reliability_at) = mime::split_headers(payload)?;
        let (_, rel_len) = mime::split_headers(&payload[reliability_at..])?;
        let messaging_at = reliability_at + rel_len;
        let (messaging, msg_len) = mime::split_headers(&payload[messaging_at..])?;
        Some(Sdg {
            routing,
            messaging,
            messaging_at,
            body_at: messaging_at + msg_len,
        })
    }

    pub fn content(&self, payload_len: usize) -> Content {
        let body = self.body_at..payload_len;
        let message_type = self.messaging.get("Message-Type").unwrap_or("");
        if self.messaging.media_type() == "application/x-msnmsgrp2p" {
            return Content::P2p {
                version: Version::V2,
                body,
            };
        }
        if message_type.eq_ignore_ascii_case("Text") {
            Content::Text {
                body,
                charset: self.messaging.charset(),
            }
        } else if message_type.eq_ignore_ascii_case("Control/Typing") {
            Content::Typing
        } else {
            Content::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_style_file_invitation() {
        let payload =
            b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsinvite; charset=UTF-8\r\n\r\n\
Application-Name: File Transfer\r\nApplication-GUID: {5D3E02AB-6190-11D3-BBBB-00C04F795683}\r\n\
Invitation-Command: INVITE\r\nInvitation-Cookie: 3\r\nApplication-File: notes.txt\r\n\
Application-FileSize: 1234\r\nConnectivity: N\r\n\r\n";
        assert_eq!(
            of_mime(payload),
            Content::File("notes.txt 1234 bytes".into())
        );
        let accept = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsinvite\r\n\r\n\
Invitation-Command: ACCEPT\r\nInvitation-Cookie: 3\r\n\r\n";
        assert_eq!(of_mime(accept), Content::Other);
    }

    #[test]
    fn old_style_webcam_invitation() {
        let payload = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsinvite\r\n\r\n\
Application-Name: Webcam\r\nApplication-GUID: {4BD96FC0-AB17-4425-A14A-439185962DC8}\r\n\
Invitation-Command: INVITE\r\nInvitation-Cookie: 9\r\n\r\n";
        assert_eq!(of_mime(payload), Content::Webcam);
    }

    #[test]
    fn nudges_and_datacasts_are_not_events() {
        let nudge =
            b"MIME-Version: 1.0\r\nContent-Type: text/x-msnmsgr-datacast\r\n\r\nID: 1\r\n\r\n";
        assert_eq!(of_mime(nudge), Content::Other);
        let ink = b"MIME-Version: 1.0\r\nContent-Type: application/x-ms-ink\r\n\r\nbase64:AAAA";
        assert_eq!(of_mime(ink), Content::Other);
        assert_eq!(of_mime(b"\xff\xfe"), Content::Other);
    }
}
