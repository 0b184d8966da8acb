//! IRC (RFC 1459/2812 with IRCv3 message tags).
//!
//! Framing: lines ended by LF (CR LF in practice). A CR not followed by LF, or a
//! NUL, makes a line that servers read differently (ngircd splits it, InspIRCd
//! joins it): such a line is judged in every reading, and is never rewritten.
//! The local id is the nick the server confirmed in numeric 001, followed across
//! NICK changes; before 001 it is the nick the client asked for. PRIVMSG and NOTICE are messages (one event per
//! target), CTCP ACTION is a message, CTCP DCC SEND is a file transfer. After the
//! STARTTLS reply 670 the connection is TLS and is relayed untouched. Before
//! 001, 64 KiB of lines with bare CRs or NULs mean the bytes are not IRC (such
//! as iperf3's data): the core stops and the rest is relayed untouched.

mod scan;

use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use scan::LineMap;

use crate::event::{ChatEvent, Direction, EventType};
use crate::session::{Feed, Frame, Pdu, ProtocolSession, Rewrite, Stop};

/// Longest line we buffer: 8191 bytes of IRCv3 tags plus a generous body.
/// A longer line means this is not IRC as we know it.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Default, Clone)]
pub struct IrcSession {
    /// The nick the server knows us by (or asked for before 001).
    nick: Option<String>,
    /// Per direction: the line being received carries no event and its start
    /// went out already, so its rest is forwarded as it arrives.
    streaming: [bool; 2],
    /// The server marks the text of every message it delivers with `+` or `-`
    /// (`CAP identify-msg`, or `CAPAB IDENTIFY-MSG` answered by 290).
    identify_msg: bool,
    /// Per direction, for the partial line held at the front of the buffer:
    /// how many of its bytes were searched for the line end already, and
    /// whether it is known to matter (so its readings need no new look). Each
    /// byte is thereby looked at a bounded number of times.
    scanned: [usize; 2],
    holding: [Partial; 2],
    /// The server welcomed the client (numeric 001).
    welcomed: bool,
    /// Bytes of lines with a bare CR or a NUL, either way, before the welcome.
    odd_before_welcome: usize,
}

/// Bytes of lines with a bare CR or a NUL before the server's welcome (001)
/// that show a stream is not IRC (iperf3's random data has them in nearly
/// every line). No IRC peer sends such lines to register, a server delivers
/// nothing for a client before its welcome (451) and cuts one that floods it,
/// and a real exchange before 001 is a few KiB.
const NOT_IRC_BEFORE_WELCOME: usize = 64 * 1024;

/// How far into a partial line its command words are looked for: IRCv3
/// tags (8191 bytes) and a prefix fit; a longer partial line is held.
const PEEK: usize = 9 * 1024;

fn index(dir: Direction) -> usize {
    match dir {
        Direction::Outgoing => 0,
        Direction::Incoming => 1,
    }
}

/// Commands that change our state or carry events, per direction (as
/// [`index`] numbers them).
const WANTED: [&[&[u8]]; 2] = [
    &[
        b"PRIVMSG", b"NOTICE", b"NICK", b"TOPIC", b"PART", b"QUIT", b"KICK",
    ],
    &[
        b"PRIVMSG", b"NOTICE", b"NICK", b"001", b"670", b"CAP", b"290", b"TOPIC", b"PART", b"QUIT",
        b"KICK", b"332",
    ],
];

fn wanted(dir: Direction) -> &'static [&'static [u8]] {
    WANTED[index(dir)]
}

/// Per direction, the bytes that start a command in [`WANTED`], in either
/// case: most lines' commands are ruled out by a look at their first byte.
static LEADS: [[bool; 256]; 2] = [leads(WANTED[0]), leads(WANTED[1])];

const fn leads(words: &[&[u8]]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < words.len() {
        let first = words[i][0];
        table[first.to_ascii_uppercase() as usize] = true;
        table[first.to_ascii_lowercase() as usize] = true;
        i += 1;
    }
    table
}

/// The length of the longest command in [`wanted`] (`PRIVMSG`).
const LONGEST_COMMAND: usize = 7;

fn is_interesting(dir: Direction, command: &[u8]) -> bool {
    command.len() <= LONGEST_COMMAND && PACKED[index(dir)].contains(&packed(command))
}

/// Per direction, the commands of [`WANTED`] as [`packed`] makes them (the
/// rest `u64::MAX`, which no word packs to): a command is compared with all
/// of them at the cost of packing it once.
static PACKED: [[u64; 12]; 2] = [pack_all(WANTED[0]), pack_all(WANTED[1])];

const fn pack_all(words: &[&[u8]]) -> [u64; 12] {
    let mut all = [u64::MAX; 12];
    let mut i = 0;
    while i < words.len() {
        all[i] = packed(words[i]);
        i += 1;
    }
    all
}

/// A word of at most [`LONGEST_COMMAND`] bytes as one number: its bytes
/// upper-cased, then its length in the last byte.
const fn packed(word: &[u8]) -> u64 {
    let mut bytes = [0; 8];
    let mut i = 0;
    while i < word.len() {
        bytes[i] = word[i].to_ascii_uppercase();
        i += 1;
    }
    bytes[7] = word.len() as u8;
    u64::from_le_bytes(bytes)
}

/// Whether `command`'s first byte starts one in [`WANTED`] for `dir`.
fn may_start_wanted(dir: Direction, command: &[u8]) -> bool {
    command
        .first()
        .is_some_and(|&first| LEADS[index(dir)][usize::from(first)])
}

/// The ways the peer may read one line (ended by LF, or partial). Servers
/// disagree on a CR that is not followed by LF: ngircd ends the line there,
/// InspIRCd drops it (and reads NUL as a space) and ends lines only at LF.
/// A line with neither a bare CR nor a NUL reads the same everywhere and is
/// its only reading; any other line is judged in every reading, so that each
/// message some server would deliver is seen.
fn readings(line: &[u8]) -> Vec<std::borrow::Cow<'_, [u8]>> {
    let body = line_body(line);
    if memchr::memchr2(b'\r', b'\0', body).is_none() {
        return vec![line.into()];
    }
    let mut all = vec![joined_reading(body).collect::<Vec<u8>>().into()];
    all.extend(ngircd_readings(body).map(Into::into));
    all
}

/// A line without its LF or CRLF.
fn line_body(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n")
        .map_or(line, |b| b.strip_suffix(b"\r").unwrap_or(b))
}

/// InspIRCd's reading of a line: CRs dropped, NULs read as spaces.
fn joined_reading(body: &[u8]) -> impl Iterator<Item = u8> + '_ {
    body.iter()
        .filter(|&&b| b != b'\r')
        .map(|&b| if b == 0 { b' ' } else { b })
}

/// ngircd's reading: a line per CR, each read as a C string (up to a NUL).
fn ngircd_readings(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    cr_pieces(body)
        .map(c_string)
        .filter(|piece| !piece.is_empty())
}

/// The pieces of `body` between its CRs, split with memchr: random bytes
/// have a CR every 256 bytes or so, and a byte-by-byte split was most of the
/// cost of relaying them.
fn cr_pieces(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let piece = rest?;
        Some(match memchr::memchr(b'\r', piece) {
            Some(cr) => {
                rest = Some(&piece[cr + 1..]);
                &piece[..cr]
            }
            None => {
                rest = None;
                piece
            }
        })
    })
}

/// `piece` read as a C string: up to its first NUL.
fn c_string(piece: &[u8]) -> &[u8] {
    &piece[..memchr::memchr(0, piece).unwrap_or(piece.len())]
}

/// Whether a reading that starts with `first` can have a command word we act
/// on: it starts with the tags, the prefix, a space or the word itself. One
/// look rules out most pieces of bytes that are not IRC.
fn may_lead_to_command(first: u8) -> bool {
    matches!(
        first.to_ascii_uppercase(),
        b'@' | b':' | b' ' | b'P' | b'N' | b'T' | b'Q' | b'K' | b'C' | b'0' | b'2' | b'3' | b'6'
    )
}

/// Whether every peer reads `line` the same way: it has no bare CR and no
/// NUL (see [`readings`]). Only such a line can be rewritten: even a line
/// that ngircd reads as nothing is read by InspIRCd, differently from its bytes.
fn read_alike(line: &[u8]) -> bool {
    memchr::memchr2(b'\r', b'\0', line_body(line)).is_none()
}

/// Whether a complete line changes our state or carries events, in any of
/// its readings (`one_reading`: it has a single one). Most lines do not, and
/// skip the full parse. Nothing is allocated: bytes that are not IRC (random
/// data has a CR or NUL in most lines) go by at the speed of the scan.
fn line_matters(dir: Direction, line: &[u8], one_reading: bool) -> bool {
    let command_matters = |reading: &[u8]| {
        // Most commands are ruled out by their first byte, before their end
        // is looked for.
        after_head(reading).is_some_and(|rest| {
            may_start_wanted(dir, rest) && is_interesting(dir, command_word(rest).0)
        })
    };
    if one_reading {
        return command_matters(line);
    }
    let body = line_body(line);
    joined_command_matters(dir, body)
        || cr_pieces(body).any(|piece| {
            piece
                .first()
                .is_some_and(|&first| may_lead_to_command(first))
                && command_matters(c_string(piece))
        })
}

/// Whether the command word of InspIRCd's reading of `body`, as
/// [`partial_command_word`] finds it, is one we act on, without building
/// that reading.
fn joined_command_matters(dir: Direction, body: &[u8]) -> bool {
    // CRs are dropped and NULs read as spaces: the first other byte leads.
    let first = body.iter().find(|&&b| !matches!(b, b'\r' | 0 | b' '));
    if !first.is_some_and(|&first| may_lead_to_command(first)) {
        return false;
    }
    fn skip_spaces(bytes: &mut std::iter::Peekable<impl Iterator<Item = u8>>) {
        while bytes.next_if_eq(&b' ').is_some() {}
    }
    let mut bytes = joined_reading(body).peekable();
    skip_spaces(&mut bytes);
    for marker in [b'@', b':'] {
        if bytes.next_if_eq(&marker).is_some() {
            if !bytes.any(|b| b == b' ') {
                return false;
            }
            skip_spaces(&mut bytes);
        }
    }
    // Longer than any command we act on.
    let mut word = [0u8; LONGEST_COMMAND + 1];
    let mut len = 0;
    for b in bytes.take_while(|&b| b != b' ' && b != b'\n') {
        if len == word.len() {
            return false;
        }
        word[len] = b;
        len += 1;
    }
    is_interesting(dir, &word[..len])
}

thread_local! {
    /// The line map of a read, kept for the next one: a vector of a few KiB
    /// allocated per read cost more than mapping the lines.
    static LINE_MAP: Cell<LineMap> = Cell::new(LineMap::default());
}

/// Whether a line that every peer reads alike matters, from a look at its
/// command past a `:prefix` (the line of nearly all traffic): `None` when
/// the full check of [`line_matters`] must decide (tags, extra spaces).
fn quick_matters(dir: Direction, line: &[u8]) -> Option<bool> {
    let command = match line.first() {
        Some(b':') => match scan::find(b' ', &line[1..]) {
            Some(at) => at + 2,
            None => return Some(false),
        },
        Some(b'@' | b' ') => return None,
        Some(_) => 0,
        None => return Some(false),
    };
    match line.get(command) {
        Some(b' ') => None,
        Some(&first) if LEADS[index(dir)][usize::from(first)] => {
            let word = packed_front(line, command)?;
            if word == PART {
                // A PART with its channels alone has nothing to log: judged
                // here, not decoded and parsed (a common line in channels).
                return Some(!one_parameter(line_body(&line[command + 4..])));
            }
            // Compared with all at once, without a branch per command.
            Some(
                PACKED[index(dir)]
                    .iter()
                    .fold(false, |any, &w| any | (w == word)),
            )
        }
        _ => Some(false),
    }
}

const PART: u64 = packed(b"PART");

/// Whether what follows a command is a single parameter after one space, as
/// in `PART #chan`: [`parse_line`] reads it as the trailing one, which leaves
/// a PART without its channels, so without events.
fn one_parameter(rest: &[u8]) -> bool {
    rest.first() == Some(&b' ')
        && rest.get(1).is_some_and(|&b| b != b' ')
        && scan::find(b' ', &rest[1..]).is_none()
}

/// The command word that starts at `at` in `line`, packed as [`packed`]
/// packs it, from one load of eight bytes; `None` when it is longer than any
/// command we act on.
fn packed_front(line: &[u8], at: usize) -> Option<u64> {
    use crate::words::{equal_bytes, word_at, ONES};
    // Past the line's end the word is padded with spaces, which end it.
    let word = word_at(line, at);
    let ends = equal_bytes(word, b' ') | equal_bytes(word, b'\r') | equal_bytes(word, b'\n');
    let len = (ends.trailing_zeros() / 8) as usize;
    if len > LONGEST_COMMAND {
        return None;
    }
    let word = word & ((1 << (8 * len)) - 1);
    // The bytes from `a` to `z` lose 0x20: the sums below carry into a
    // byte's high bit only for them (bytes over 0x7f are left out).
    let low = word & (ONES * 0x7f);
    let lower = (low + ONES * (0x80 - b'a' as u64)) & !(low + ONES * (0x7f - b'z' as u64)) & !word;
    let upper = word - ((lower & (ONES * 0x80)) >> 2);
    Some(upper | (len as u64) << 56)
}

/// Whether a line whose end has not arrived yet may matter to us: in one of
/// its readings, its command word so far is a prefix of one we act on. Lines
/// that cannot (server replies, PINGs, MOTD, or bytes that are not IRC at all)
/// are forwarded without waiting for their end, so the proxy never holds them.
fn partial_decision(dir: Direction, partial: &[u8]) -> Partial {
    let partial = &partial[..partial.len().min(PEEK)];
    let mut decision = Partial::Forward;
    for reading in readings(partial) {
        match partial_command_word(&reading) {
            Some((word, true)) if is_interesting(dir, word) => return Partial::Settled,
            Some((_, true)) => {}
            // Still inside the tags or the prefix.
            None if decision == Partial::Forward => decision = Partial::InHead,
            None => {}
            Some((word, false))
                if wanted(dir).iter().any(|w| {
                    w.len() >= word.len() && w[..word.len()].eq_ignore_ascii_case(word)
                }) =>
            {
                decision = Partial::Unsettled;
            }
            Some((_, false)) => {}
        }
    }
    decision
}

/// What becomes of a partial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Partial {
    /// It cannot matter: forward it as it comes.
    #[default]
    Forward,
    /// Held until its end: a reading has a command we act on.
    Settled,
    /// Held while its command word goes on.
    Unsettled,
    /// Held while every reading is still in its tags or prefix: only a
    /// space, CR or NUL can change that.
    InHead,
}

/// The command word of a partial line as far as it has arrived, and whether
/// it is complete; `None` while the tags or the prefix before it go on.
fn partial_command_word(partial: &[u8]) -> Option<(&[u8], bool)> {
    after_head(partial).map(command_word)
}

/// A line, or a partial one, from its command word on: after its tags, its
/// prefix and the spaces; `None` while the tags or the prefix go on.
fn after_head(partial: &[u8]) -> Option<&[u8]> {
    fn trim_spaces(s: &[u8]) -> &[u8] {
        &s[s.iter().take_while(|&&b| b == b' ').count()..]
    }
    let mut rest = trim_spaces(partial);
    for marker in [b'@', b':'] {
        if rest.first() == Some(&marker) {
            let space = scan::find(b' ', rest)?;
            rest = trim_spaces(&rest[space..]);
        }
    }
    Some(rest)
}

/// The command word at the front of `rest` as far as it has arrived, and
/// whether it is complete.
fn command_word(rest: &[u8]) -> (&[u8], bool) {
    // A word longer than any we act on is cut there, and settled: no caller
    // needs more of it, and lines of bytes that are not IRC go by unscanned.
    let head = &rest[..rest.len().min(LONGEST_COMMAND + 1)];
    match head.iter().position(|&b| matches!(b, b' ' | b'\r' | b'\n')) {
        Some(end) => (&rest[..end], true),
        None if head.len() > LONGEST_COMMAND => (head, true),
        None => (rest, false),
    }
}

/// One parsed line, borrowing from its bytes.
#[derive(Debug)]
struct Line<'a> {
    prefix: Option<&'a str>,
    command: &'a str,
    /// The middle parameters, as they stand between the command and the
    /// trailing one (see [`Line::params`]).
    middle: &'a str,
    /// The trailing parameter and its byte range within the line.
    trailing: Option<(&'a str, std::ops::Range<usize>)>,
}

impl<'a> Line<'a> {
    /// The middle parameters, split where the line has them, not collected.
    fn params(&self) -> impl Iterator<Item = &'a str> {
        let mut rest = self.middle;
        std::iter::from_fn(move || {
            let start = rest.bytes().position(|b| b != b' ')?;
            let end =
                scan::find(b' ', &rest.as_bytes()[start..]).map_or(rest.len(), |at| start + at);
            let param = &rest[start..end];
            rest = &rest[end..];
            Some(param)
        })
    }
}

fn parse_line(line: &str) -> Option<Line<'_>> {
    // Byte positions: every boundary below is a space, a colon or a line
    // end, so slicing the `str` there is always at a character boundary.
    let bytes = line.as_bytes();
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\r' | b'\n') {
        end -= 1;
    }
    let bytes = &bytes[..end];
    let past_spaces = |from: usize| from + bytes[from..].iter().take_while(|&&b| b == b' ').count();
    let space_after = |from: usize| scan::find(b' ', &bytes[from..]).map(|at| from + at);
    let mut at = past_spaces(0);
    if bytes.get(at) == Some(&b'@') {
        at = past_spaces(space_after(at)?);
    }
    let mut prefix = None;
    if bytes.get(at) == Some(&b':') {
        let space = space_after(at + 1)?;
        prefix = Some(&line[at + 1..space]);
        at = past_spaces(space);
    }
    let cmd_end = space_after(at).unwrap_or(end);
    if cmd_end == at {
        return None;
    }
    let command = &line[at..cmd_end];
    // From here the rest is empty or starts with a space, so the trailing
    // parameter starts at the first colon after a space.
    let rest = &bytes[cmd_end..];
    let mut from = 0;
    let mut colons = std::iter::from_fn(|| {
        let colon = from + scan::find(b':', &rest[from..])?;
        from = colon + 1;
        Some(colon)
    });
    let colon = colons.find(|&c| c > 0 && rest[c - 1] == b' ');
    let (middle_end, trailing) = match colon {
        Some(c) => (cmd_end + c - 1, Some(cmd_end + c + 1..end)),
        // Without a colon the last middle parameter is the trailing one.
        None => {
            let params_end = end - rest.iter().rev().take_while(|&&b| b == b' ').count();
            match scan::rfind(b' ', &bytes[cmd_end..params_end]) {
                Some(space) => (cmd_end + space, Some(cmd_end + space + 1..params_end)),
                None => (end, None),
            }
        }
    };
    let trailing = trailing.map(|range| (&line[range.clone()], range));
    Some(Line {
        prefix,
        command,
        middle: &line[cmd_end..middle_end],
        trailing,
    })
}

/// IRC has no declared charset: UTF-8 where valid, else Latin-1 so that
/// nothing is lost from the log. (Every line with events is decoded, and
/// checked in a few vector steps.)
fn decode(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    // simdutf8 hands what is shorter than 64 bytes to the standard library,
    // about four instructions a byte; most such lines are ASCII, which is
    // checked a word at a time.
    if bytes.len() < 64 && bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        return unsafe { std::str::from_utf8_unchecked(bytes) }.into();
    }
    match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => text.into(),
        Err(_) => bytes.iter().map(|&b| b as char).collect::<String>().into(),
    }
}

/// `command` upper-cased in `space`, without an allocation per line; a
/// command longer than any we act on is empty.
fn upper_command<'a>(command: &str, space: &'a mut [u8; 8]) -> &'a [u8] {
    let Some(upper) = space.get_mut(..command.len()) else {
        return b"";
    };
    // Copied and upper-cased in one loop: a command is a few bytes, less
    // than a call to memcpy and a UTF-8 check cost.
    for (to, from) in upper.iter_mut().zip(command.bytes()) {
        *to = from.to_ascii_uppercase();
    }
    upper
}

fn is_channel(target: &str) -> bool {
    // A STATUSMSG target such as `@#chan` is a channel too.
    let t = target.trim_start_matches(['@', '+', '%']);
    t.starts_with(['#', '&', '!']) || (t.starts_with('+') && t.len() > 1)
}

fn nick_of(prefix: &str) -> Option<&str> {
    // Only `nick!user@host` is a user; a bare name is a server.
    scan::find(b'!', prefix.as_bytes()).map(|bang| &prefix[..bang])
}

/// What a message body means once CTCP is taken into account.
enum Body<'a> {
    Text(&'a str),
    Action(&'a str),
    DccSend {
        name: String,
        size: Option<&'a str>,
    },
    /// Any other CTCP request or reply (`VERSION`, `PING`, a reply's text):
    /// logged as `/ctcp` with what it carries.
    OtherCtcp(&'a str),
}

fn classify(body: &str) -> Body<'_> {
    let Some(ctcp) = body.strip_prefix('\x01') else {
        return Body::Text(body);
    };
    let ctcp = ctcp.strip_suffix('\x01').unwrap_or(ctcp);
    if let Some(action) = ctcp.strip_prefix("ACTION ") {
        return Body::Action(action);
    }
    if let Some(args) = ctcp.strip_prefix("DCC SEND ") {
        let (name, rest) = match args.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((name, rest)) => (name, rest),
                None => return Body::OtherCtcp(ctcp),
            },
            None => args.split_once(' ').unwrap_or((args, "")),
        };
        // ip port [size [token]]
        let size = rest.split_whitespace().nth(2);
        return Body::DccSend {
            name: name.to_string(),
            size,
        };
    }
    Body::OtherCtcp(ctcp)
}

/// The byte range of the text a filter may rewrite, inside the trailing parameter.
fn text_range(body: &str) -> Option<std::ops::Range<usize>> {
    match classify(body) {
        Body::Text(t) => Some(0..t.len()),
        Body::Action(a) => {
            let start = "\x01ACTION ".len();
            Some(start..start + a.len())
        }
        Body::OtherCtcp(c) => Some(1..1 + c.len()),
        Body::DccSend { .. } => None,
    }
}

impl IrcSession {
    fn local_id(&self) -> String {
        self.nick.clone().unwrap_or_default()
    }

    /// Update state from a line and return its chat events.
    fn inspect(&mut self, dir: Direction, line: &Line<'_>) -> Vec<ChatEvent> {
        let mut space = [0; 8];
        match (dir, upper_command(line.command, &mut space)) {
            (Direction::Outgoing, b"NICK") => {
                // Before registration the requested nick is the best we know.
                if self.nick.is_none() {
                    if let Some((nick, _)) = &line.trailing {
                        self.nick = Some(nick.to_string());
                    }
                }
                Vec::new()
            }
            (Direction::Incoming, b"001") => {
                self.welcomed = true;
                if let Some(nick) = line.params().next() {
                    self.nick = Some(nick.to_string());
                }
                Vec::new()
            }
            (Direction::Incoming, b"NICK") => {
                let old = line.prefix.and_then(nick_of);
                if let (Some(old), Some((new, _))) = (old, &line.trailing) {
                    if self
                        .nick
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(old))
                    {
                        self.nick = Some(new.to_string());
                    }
                }
                Vec::new()
            }
            (Direction::Incoming, b"CAP") => {
                if let (Some(sub), Some((caps, _))) = (line.params().nth(1), &line.trailing) {
                    for cap in caps.split(' ') {
                        let (on, name) = match cap.strip_prefix('-') {
                            Some(name) => (false, name),
                            None => (sub.eq_ignore_ascii_case("ACK"), cap),
                        };
                        let acked_or_deleted =
                            ["ACK", "DEL"].iter().any(|s| sub.eq_ignore_ascii_case(s));
                        if acked_or_deleted && name.eq_ignore_ascii_case("identify-msg") {
                            self.identify_msg = on;
                        }
                    }
                }
                Vec::new()
            }
            (Direction::Incoming, b"290") => {
                let mut named = line.params().chain(line.trailing.as_ref().map(|(t, _)| *t));
                if named.any(|p| p.eq_ignore_ascii_case("IDENTIFY-MSG")) {
                    self.identify_msg = true;
                }
                Vec::new()
            }
            (_, b"PRIVMSG" | b"NOTICE") => self.message_events(dir, line),
            (_, command @ (b"TOPIC" | b"PART" | b"QUIT" | b"KICK"))
            | (Direction::Incoming, command @ b"332") => self.reason_events(dir, command, line),
            _ => Vec::new(),
        }
    }

    /// The length of the identify-msg flag before a delivered message's text.
    fn flag_len(&self, dir: Direction, body: &str) -> usize {
        usize::from(self.identify_msg && dir == Direction::Incoming && body.starts_with(['+', '-']))
    }

    /// The stop for a line that matters and is longer than [`MAX_LINE`].
    fn too_large(&self, dir: Direction, line: &[u8]) -> Stop {
        Stop::TooLarge {
            why: "IRC line longer than 64 KiB".into(),
            conversation: self.conversation_of(dir, line).map(Box::new),
        }
    }

    /// The conversation of a message too long to inspect: its first target.
    fn conversation_of(&self, dir: Direction, partial: &[u8]) -> Option<ChatEvent> {
        // The tags, prefix, command and targets are within the first 16 KiB.
        let text = decode(&partial[..partial.len().min(16 * 1024)]);
        let line = parse_line(&text)?;
        let mut event = match line.command.to_ascii_uppercase().as_str() {
            "PRIVMSG" | "NOTICE" => self.message_events(dir, &line).into_iter().next()?,
            _ => return None,
        };
        event.text.clear();
        Some(event)
    }

    /// The text of a TOPIC (and of the 332 reply that shows a topic), and the
    /// reason of a PART, QUIT or KICK: what the other members read. A QUIT
    /// of ours goes to every channel we are in, logged with the remote id `*`.
    fn reason_events(&self, dir: Direction, command: &[u8], line: &Line<'_>) -> Vec<ChatEvent> {
        let Some((text, _)) = line.trailing.clone().filter(|(t, _)| !t.is_empty()) else {
            return Vec::new();
        };
        let mut params = line.params();
        let (targets, prefix) = match (command, params.next(), params.next()) {
            (b"TOPIC", Some(channels), _) => (channels, "/topic ".to_string()),
            (b"PART", Some(channels), _) => (channels, "/part ".to_string()),
            (b"KICK", Some(channel), Some(nick)) => (channel, format!("/kick {nick} ")),
            (b"332", _, Some(channel)) => (channel, "/topic ".to_string()),
            (b"QUIT", _, _) => ("*", "/quit ".to_string()),
            _ => return Vec::new(),
        };
        let sender = line.prefix.and_then(nick_of);
        if dir == Direction::Incoming && sender.is_none() && command != b"332" {
            return Vec::new();
        }
        per_target(targets, text.to_string(), |target, text| {
            let (remote_id, group) = match (command, sender) {
                (b"QUIT", Some(nick)) if dir == Direction::Incoming => (nick.to_string(), false),
                _ => (target.to_string(), true),
            };
            let prefix = match sender {
                Some(nick) if dir == Direction::Incoming && group => {
                    format!("{nick}: {prefix}")
                }
                _ => prefix.clone(),
            };
            ChatEvent {
                direction: dir,
                kind: EventType::Message,
                local_id: self.local_id(),
                remote_id,
                group,
                prefix,
                text,
                encrypted: false,
            }
        })
    }

    /// The byte range of the text a filter may rewrite, inside the trailing
    /// parameter of a line with this command.
    fn rewritable(
        &self,
        dir: Direction,
        command: &str,
        body: &str,
    ) -> Option<std::ops::Range<usize>> {
        match command.to_ascii_uppercase().as_str() {
            "PRIVMSG" | "NOTICE" => {
                let flag = self.flag_len(dir, body);
                text_range(&body[flag..]).map(|t| t.start + flag..t.end + flag)
            }
            _ => Some(0..body.len()),
        }
    }

    fn message_events(&self, dir: Direction, line: &Line<'_>) -> Vec<ChatEvent> {
        let (Some(targets), Some((body, _))) = (line.params().next(), &line.trailing) else {
            return Vec::new();
        };
        let body = &body[self.flag_len(dir, body)..];
        let (kind, prefix, text) = match classify(body) {
            Body::Text(t) => (EventType::Message, String::new(), t.to_string()),
            Body::Action(a) => (EventType::Message, "/me ".to_string(), a.to_string()),
            Body::DccSend { name, size } => {
                let text = match size {
                    Some(size) => format!("{name} {size} bytes"),
                    None => name,
                };
                (EventType::File, String::new(), text)
            }
            Body::OtherCtcp("") => return Vec::new(),
            Body::OtherCtcp(c) => (EventType::Message, "/ctcp ".to_string(), c.to_string()),
        };
        let sender = match dir {
            Direction::Outgoing => None,
            // A line without a user prefix comes from a server, not a person.
            Direction::Incoming => match line.prefix.and_then(nick_of) {
                Some(nick) => Some(nick),
                None => return Vec::new(),
            },
        };
        per_target(targets, text, |target, text| {
            let group = is_channel(target);
            let remote_id = match sender {
                Some(nick) if !group => nick.to_string(),
                _ => target.trim_start_matches(['@', '+', '%']).to_string(),
            };
            let prefix = match sender {
                Some(nick) if group => format!("{nick}: {prefix}"),
                _ => prefix.clone(),
            };
            ChatEvent {
                direction: dir,
                kind,
                local_id: self.local_id(),
                remote_id,
                group,
                prefix,
                text,
                encrypted: false,
            }
        })
    }
}

/// An event per name in `targets` (comma-separated; empty names are
/// skipped), each made by `event` from its name and the text: every event
/// but the last gets a copy, the last the text itself.
fn per_target(
    targets: &str,
    mut text: String,
    mut event: impl FnMut(&str, String) -> ChatEvent,
) -> Vec<ChatEvent> {
    // Nearly every message has one target: nothing to split.
    if scan::find(b',', targets.as_bytes()).is_none() {
        return match targets {
            "" => Vec::new(),
            target => vec![event(target, text)],
        };
    }
    let mut targets = targets.split(',').filter(|t| !t.is_empty()).peekable();
    let mut events = Vec::new();
    while let Some(target) = targets.next() {
        let text = match targets.peek() {
            Some(_) => text.clone(),
            None => std::mem::take(&mut text),
        };
        events.push(event(target, text));
    }
    events
}

impl ProtocolSession for IrcSession {
    fn feed(&mut self, dir: Direction, buf: &mut BytesMut) -> Feed {
        let mut feed = Feed::default();
        let streaming = &mut self.streaming[index(dir)];
        if *streaming {
            // A CR ends the line for ngircd: what follows may be a message.
            let end = memchr::memchr2(b'\r', b'\n', buf)
                .map(|at| at + usize::from(buf[at..].starts_with(b"\r\n")));
            match end {
                Some(nl) => {
                    feed.frames
                        .push(Frame::Opaque(buf.split_to(nl + 1).freeze()));
                    *streaming = false;
                }
                None => {
                    if !buf.is_empty() {
                        feed.frames.push(Frame::Opaque(buf.split().freeze()));
                    }
                    return feed;
                }
            }
        }
        let d = index(dir);
        // The front of the held partial line has no line end: search on.
        let held_before = self.scanned[d].min(buf.len());
        let whole =
            memchr::memrchr(b'\n', &buf[held_before..]).map_or(0, |at| held_before + at + 1);
        let mut map = LINE_MAP.take();
        let alike = map.map(&buf[..whole]);
        if whole > 0 {
            self.holding[d] = Partial::Forward;
        }
        // Positions in the read as it came: lines without events are forwarded
        // together as one opaque frame, from `split` (where the last frame
        // ended) to `start` (where the current line starts).
        let (mut split, mut start) = (0, 0);
        for end in map.ends() {
            let line_bytes = &buf[start - split..end - split];
            let quick = if alike {
                quick_matters(dir, line_bytes)
            } else {
                None
            };
            if quick == Some(false) {
                start = end;
                continue;
            }
            let odd = !alike && !read_alike(line_bytes);
            let one_reading = !odd;
            if odd && !self.welcomed {
                self.odd_before_welcome += end - start;
                if self.odd_before_welcome > NOT_IRC_BEFORE_WELCOME {
                    feed.stop = Some(Stop::NotThisProtocol(format!(
                        "{} bytes of lines with a bare CR or a NUL before the server's welcome (001): not IRC",
                        self.odd_before_welcome
                    )));
                    break;
                }
            }
            if quick.is_none() && !line_matters(dir, line_bytes, one_reading) {
                start = end;
                continue;
            }
            // Longer than the core holds back: judged as such whether it came
            // whole or in pieces (see the end of this function).
            if end - start > MAX_LINE {
                feed.stop = Some(self.too_large(dir, line_bytes));
                break;
            }
            let mut events: Vec<ChatEvent> = Vec::new();
            let mut starttls = false;
            let mut judge = |reading: &[u8], events: &mut Vec<ChatEvent>| {
                let text = decode(reading);
                if let Some(line) = parse_line(&text) {
                    starttls |= dir == Direction::Incoming && line.command == "670";
                    let found = self.inspect(dir, &line);
                    if events.is_empty() {
                        *events = found;
                    } else {
                        for event in found {
                            if !events.contains(&event) {
                                events.push(event);
                            }
                        }
                    }
                }
            };
            if one_reading {
                judge(line_bytes, &mut events);
            } else {
                for reading in readings(line_bytes) {
                    judge(&reading, &mut events);
                }
            }
            if !events.is_empty() {
                if feed.frames.is_empty() {
                    // Where one line has events, most do (chat): room for a
                    // frame per line left, instead of growing by doubling.
                    feed.frames.reserve(map.count_from(start) + 1);
                }
                if start > split {
                    let plain = buf.split_to(start - split).freeze();
                    feed.frames.push(Frame::Opaque(plain));
                }
                let bytes = buf.split_to(end - start).freeze();
                feed.frames.push(Frame::Pdu(Pdu { bytes, events }));
                split = end;
            }
            start = end;
            if starttls {
                feed.stop = Some(Stop::Encrypted("IRC STARTTLS accepted (670)"));
                break;
            }
        }
        LINE_MAP.set(map);
        if start > split {
            feed.frames
                .push(Frame::Opaque(buf.split_to(start - split).freeze()));
        }
        self.scanned[d] = buf.len();
        if feed.stop.is_some() {
            return feed;
        }
        let unchanged = match self.holding[d] {
            Partial::Settled => true,
            // (A line end found meanwhile reset this to Forward.)
            Partial::InHead => memchr::memchr3(b' ', b'\r', 0, &buf[held_before..]).is_none(),
            Partial::Unsettled | Partial::Forward => false,
        };
        if !buf.is_empty() && !unchanged {
            self.holding[d] = partial_decision(dir, buf);
            if self.holding[d] == Partial::Forward {
                feed.frames.push(Frame::Opaque(buf.split().freeze()));
                self.streaming[d] = true;
                self.scanned[d] = 0;
            }
        }
        if buf.len() > MAX_LINE {
            feed.stop = Some(self.too_large(dir, buf));
        }
        feed
    }

    fn rewrite(&self, dir: Direction, pdu: &Pdu, change: Rewrite<'_>) -> Option<Bytes> {
        let Rewrite::Text(new_text) = change;
        // One new text cannot stand for every reading of an ambiguous line.
        if !read_alike(&pdu.bytes) {
            return None;
        }
        let line = std::str::from_utf8(&pdu.bytes).ok()?;
        let parsed = parse_line(line)?;
        let (body, body_range) = parsed.trailing?;
        let text = self.rewritable(dir, parsed.command, body)?;
        if body[text.clone()] == *new_text {
            return Some(pdu.bytes.clone());
        }
        // A CR or LF in the replacement would start a new IRC command.
        let safe = new_text.replace(['\r', '\n'], " ");
        let bytes = line.as_bytes();
        let mut out = Vec::with_capacity(line.len() + safe.len() + 1);
        out.extend_from_slice(&bytes[..body_range.start]);
        let mut after = &bytes[body_range.start + text.end..];
        // A last parameter sent without its colon needs one once it may hold
        // spaces; the spaces that followed it would then join the text.
        if bytes.get(body_range.start.wrapping_sub(1)) != Some(&b':') {
            out.push(b':');
            after = &after[after.iter().take_while(|&&b| b == b' ').count()..];
        }
        out.extend_from_slice(&bytes[body_range.start..body_range.start + text.start]);
        out.extend_from_slice(safe.as_bytes());
        out.extend_from_slice(after);
        Some(Bytes::from(out))
    }

    fn notice_to_client(&self, remote_id: &str, text: &str) -> Option<Bytes> {
        let nick = self.nick.as_deref()?;
        let flag = if self.identify_msg { "+" } else { "" };
        let text: String = flag
            .chars()
            .chain(text.chars().filter(|c| !matches!(c, '\r' | '\n' | '\0')))
            .collect();
        let line = if is_channel(remote_id) {
            format!(":IMSpector!imspector@imspector NOTICE {remote_id} :{text}\r\n")
        } else {
            format!(":{remote_id}!imspector@imspector NOTICE {nick} :{text}\r\n")
        };
        Some(Bytes::from(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_we_act_on_may_lead_a_reading() {
        for dir in [Direction::Outgoing, Direction::Incoming] {
            assert!(wanted(dir).iter().all(
                |w| may_lead_to_command(w[0]) && may_lead_to_command(w[0].to_ascii_lowercase())
            ));
        }
    }

    #[test]
    fn no_command_we_act_on_is_longer_than_longest_command() {
        for dir in [Direction::Outgoing, Direction::Incoming] {
            assert!(wanted(dir).iter().all(|w| w.len() <= LONGEST_COMMAND));
        }
    }

    /// The check of a line's InspIRCd reading, done without building that
    /// reading, agrees with the reading itself on lines full of CRs, NULs,
    /// spaces, prefixes and commands.
    /// Fewer than `most` of `pieces`, chosen by a xorshift of `seed`.
    fn pieces_joined(pieces: &[&[u8]], most: u64, seed: &mut u64) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..(*seed % most) {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            out.extend_from_slice(pieces[(*seed % pieces.len() as u64) as usize]);
        }
        out
    }

    #[test]
    fn the_joined_reading_is_judged_without_being_built() {
        let pieces: [&[u8]; 12] = [
            b"\r",
            b"\0",
            b" ",
            b":",
            b"@",
            b"PRIV",
            b"MSG",
            b"NOTICE",
            b"x",
            b"n!u@h",
            b"\n",
            b"PRIVMSGS",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let body = pieces_joined(&pieces, 7, &mut seed);
            let joined: Vec<u8> = joined_reading(&body).collect();
            for dir in [Direction::Outgoing, Direction::Incoming] {
                let built = partial_command_word(&joined)
                    .is_some_and(|(word, _)| is_interesting(dir, word));
                assert_eq!(
                    joined_command_matters(dir, &body),
                    built,
                    "{:?}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    }

    #[test]
    fn a_line_matters_when_one_of_its_readings_has_a_command_we_act_on() {
        let pieces: [&[u8]; 12] = [
            b"\r", b"\0", b" ", b":", b"@", b"priv", b"MSG", b"001", b"cap", b"x", b"n!u@h", b"Q",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut line = pieces_joined(&pieces, 8, &mut seed);
            line.extend_from_slice(b"\r\n");
            for dir in [Direction::Outgoing, Direction::Incoming] {
                let any_reading = readings(&line).iter().any(|reading| {
                    partial_command_word(reading).is_some_and(|(word, _)| is_interesting(dir, word))
                });
                assert_eq!(
                    line_matters(dir, &line, false),
                    any_reading,
                    "{:?}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
    }

    #[test]
    fn the_look_at_the_command_agrees_with_the_full_check() {
        let pieces: [&[u8]; 16] = [
            b" ",
            b":",
            b"@",
            b"priv",
            b"MSG",
            b"PART",
            b"001",
            b"cap",
            b"x",
            b"n!u@h",
            b"irc.example.net",
            b"Q",
            b"PING",
            b"353",
            b"\xc3\xa9",
            b"\x7f",
        ];
        let mut seed = 0x51_7cc1_b727_220au64;
        let mut decided = 0;
        for _ in 0..50_000 {
            let mut line = pieces_joined(&pieces, 9, &mut seed);
            line.extend_from_slice(if seed & 1 == 0 { b"\r\n" } else { b"\n" });
            for dir in [Direction::Outgoing, Direction::Incoming] {
                if let Some(matters) = quick_matters(dir, &line) {
                    decided += 1;
                    let shown = String::from_utf8_lossy(&line);
                    if matters == line_matters(dir, &line, true) {
                        continue;
                    }
                    // Only a PART with one parameter is judged apart from
                    // the full check, which finds nothing in it either.
                    let text = decode(&line);
                    let parsed = parse_line(&text).unwrap();
                    assert!(
                        !matters && parsed.command.eq_ignore_ascii_case("PART"),
                        "{shown:?}"
                    );
                    let mut session = IrcSession::default();
                    assert_eq!(session.inspect(dir, &parsed), vec![], "{shown:?}");
                    let unchanged = format!("{:?}", IrcSession::default());
                    assert_eq!(format!("{session:?}"), unchanged, "{shown:?}");
                }
            }
        }
        // The look is worth its place only if it decides most lines.
        assert!(decided > 60_000, "{decided}");
    }

    #[test]
    fn a_part_judged_by_its_look_has_no_events_in_the_full_check() {
        for head in ["", ":n!u@h "] {
            for command in ["PART", "part"] {
                for rest in [
                    "", " ", " #a", " :b", " #a ", "  #a", " #a b", " #a :b", " #a :",
                ] {
                    let line = format!("{head}{command}{rest}\r\n");
                    for dir in [Direction::Outgoing, Direction::Incoming] {
                        let parsed = parse_line(&line).unwrap();
                        let found = IrcSession::default().inspect(dir, &parsed);
                        let judged_by_look = quick_matters(dir, line.as_bytes()) == Some(false);
                        assert!(!judged_by_look || found.is_empty(), "{line:?}");
                        // Lines with a reason reach the full check, which logs it.
                        let with_reason = rest.starts_with(" #a ")
                            && rest.ends_with('b')
                            && (head, dir) != ("", Direction::Incoming);
                        assert_eq!(with_reason, !found.is_empty(), "{line:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn lines_read_as_utf8_where_valid_else_as_latin1() {
        let long = "x".repeat(70);
        for (bytes, text) in [
            (&b"PRIVMSG #a :plain\r\n"[..], "PRIVMSG #a :plain\r\n"),
            (b"PRIVMSG #a :caf\xc3\xa9", "PRIVMSG #a :caf\u{e9}"),
            (b"PRIVMSG #a :caf\xe9", "PRIVMSG #a :caf\u{e9}"),
            (long.as_bytes(), &long),
        ] {
            assert_eq!(decode(bytes), text);
        }
        let long_latin1 = [long.as_bytes(), b"\xe9"].concat();
        assert_eq!(decode(&long_latin1), long.clone() + "\u{e9}");
    }

    #[test]
    fn the_quick_command_check_finds_what_the_parser_finds() {
        for line in [
            "PRIVMSG #a :hi\r\n",
            "privmsg bob :hi\n",
            "  :nick!u@h   NOTICE  bob :x\r\n",
            "@time=2024-01-01T00:00:00Z :n!u@h PRIVMSG #c :x\r\n",
            ":irc.example.net 001 alice :Welcome\r\n",
            ":irc.example.net 670 alice :STARTTLS ok\r\n",
            "NICK\r\n",
            "NICK alice\r\n",
            ":irc.example.net 353 me = #c :a b c\r\n",
            "PING :x\r\n",
            "@tags-without-anything-else\r\n",
            ":prefix-only\r\n",
            "PRIVMSGX #a :no\r\n",
            "\r\n",
        ] {
            for dir in [Direction::Outgoing, Direction::Incoming] {
                let parsed =
                    parse_line(line).is_some_and(|l| is_interesting(dir, l.command.as_bytes()));
                for one_reading in [true, false] {
                    let matters = line_matters(dir, line.as_bytes(), one_reading);
                    assert_eq!(matters, parsed, "{line:?}");
                }
            }
        }
    }

    fn run(s: &mut IrcSession, dir: Direction, data: &str) -> Vec<ChatEvent> {
        let mut buf = BytesMut::from(data.as_bytes());
        events_of(s.feed(dir, &mut buf))
    }

    fn events_of(feed: Feed) -> Vec<ChatEvent> {
        feed.frames
            .into_iter()
            .flat_map(|f| match f {
                Frame::Pdu(p) => p.events,
                Frame::Opaque(_) => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn local_id_follows_001_and_nick_changes() {
        let mut s = IrcSession::default();
        run(
            &mut s,
            Direction::Outgoing,
            "NICK alice\r\nUSER a 0 * :A\r\n",
        );
        assert_eq!(s.nick.as_deref(), Some("alice"));
        run(&mut s, Direction::Incoming, ":srv 001 alice_ :Welcome\r\n");
        assert_eq!(s.nick.as_deref(), Some("alice_"));
        run(&mut s, Direction::Incoming, ":bob!b@h NICK :bobby\r\n");
        assert_eq!(s.nick.as_deref(), Some("alice_"));
        run(&mut s, Direction::Incoming, ":alice_!a@h NICK :al\r\n");
        assert_eq!(s.nick.as_deref(), Some("al"));
    }

    #[test]
    fn privmsg_to_several_targets_gives_one_event_each() {
        let mut s = IrcSession::default();
        run(&mut s, Direction::Incoming, ":srv 001 me :hi\r\n");
        let ev = run(
            &mut s,
            Direction::Outgoing,
            "PRIVMSG bob,#chan :hello there\n",
        );
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].remote_id, "bob");
        assert!(!ev[0].group);
        assert_eq!(ev[1].remote_id, "#chan");
        assert!(ev[1].group);
        assert!(ev
            .iter()
            .all(|e| e.text == "hello there" && e.local_id == "me"));
    }

    #[test]
    fn incoming_channel_lines_are_prefixed_with_the_sender() {
        let mut s = IrcSession::default();
        run(&mut s, Direction::Incoming, ":srv 001 me :hi\r\n");
        let ev = run(
            &mut s,
            Direction::Incoming,
            "@time=2025-01-01T00:00:00Z :bob!b@h PRIVMSG #chan :hi all\r\n",
        );
        assert_eq!(ev[0].remote_id, "#chan");
        assert_eq!(ev[0].event_data(), "bob: hi all");
        let ev = run(&mut s, Direction::Incoming, ":bob!b@h NOTICE me :psst\r\n");
        assert_eq!(ev[0].remote_id, "bob");
        assert_eq!(ev[0].event_data(), "psst");
    }

    #[test]
    fn server_notices_are_not_events_and_other_ctcp_is_logged() {
        let mut s = IrcSession::default();
        assert!(run(
            &mut s,
            Direction::Incoming,
            ":srv NOTICE * :*** Looking up\r\n"
        )
        .is_empty());
        assert!(run(
            &mut s,
            Direction::Incoming,
            "PRIVMSG victim :DCC SEND f 1 2 3\r\n"
        )
        .is_empty());
        for (line, logged) in [
            ("PRIVMSG bob :\x01VERSION\x01\r\n", "/ctcp VERSION"),
            (
                "NOTICE bob :\x01VERSION evil 1.0 darn\x01\r\n",
                "/ctcp VERSION evil 1.0 darn",
            ),
            // Clients read this as a CTCP named "\x01ACTION"; it is logged whole.
            (
                "PRIVMSG bob :\x01\x01ACTION waves\x01\r\n",
                "/ctcp \x01ACTION waves",
            ),
        ] {
            let ev = run(&mut s, Direction::Outgoing, line);
            assert_eq!(ev.len(), 1, "{line:?}");
            assert_eq!(ev[0].event_data(), logged);
        }
        assert!(run(&mut s, Direction::Outgoing, "PRIVMSG bob :\x01\x01\r\n").is_empty());
    }

    #[test]
    fn topics_and_the_reasons_of_part_quit_and_kick_are_logged() {
        let mut s = IrcSession::default();
        run(&mut s, Direction::Incoming, ":srv 001 me :hi\r\n");
        let logged = |s: &mut IrcSession, dir, line: &str| -> Vec<(String, bool, String)> {
            run(s, dir, line)
                .into_iter()
                .map(|e| (e.remote_id.clone(), e.group, e.event_data()))
                .collect()
        };
        let one =
            |remote: &str, group, data: &str| vec![(remote.to_string(), group, data.to_string())];
        use Direction::{Incoming, Outgoing};
        assert_eq!(
            logged(&mut s, Outgoing, "TOPIC #c :darn topic\r\n"),
            one("#c", true, "/topic darn topic")
        );
        assert_eq!(logged(&mut s, Outgoing, "TOPIC #c\r\n"), vec![]);
        assert_eq!(
            logged(&mut s, Outgoing, "PART #a,#b :bye all\r\n"),
            [
                one("#a", true, "/part bye all"),
                one("#b", true, "/part bye all")
            ]
            .concat()
        );
        assert_eq!(logged(&mut s, Outgoing, "PART #a\r\n"), vec![]);
        assert_eq!(
            logged(&mut s, Outgoing, "PART #a bye\r\n"),
            one("#a", true, "/part bye")
        );
        assert_eq!(logged(&mut s, Incoming, ":bob!b@h PART #c\r\n"), vec![]);
        assert_eq!(
            logged(&mut s, Outgoing, "QUIT :gone fishing\r\n"),
            one("*", true, "/quit gone fishing")
        );
        assert_eq!(
            logged(&mut s, Outgoing, "KICK #c bob :out\r\n"),
            one("#c", true, "/kick bob out")
        );
        assert_eq!(logged(&mut s, Outgoing, "KICK #c bob\r\n"), vec![]);
        assert_eq!(
            logged(&mut s, Incoming, ":bob!b@h TOPIC #c :new\r\n"),
            one("#c", true, "bob: /topic new")
        );
        assert_eq!(
            logged(&mut s, Incoming, ":srv 332 me #c :the topic\r\n"),
            one("#c", true, "/topic the topic")
        );
        assert_eq!(
            logged(&mut s, Incoming, ":bob!b@h QUIT :Quit: bye\r\n"),
            one("bob", false, "/quit Quit: bye")
        );
        assert_eq!(
            logged(&mut s, Incoming, ":bob!b@h PART #c :later\r\n"),
            one("#c", true, "bob: /part later")
        );
        // Rewriting replaces the reason and keeps the command.
        let mut buf = BytesMut::from(&b"PART #c :darn it\r\n"[..]);
        let feed = s.feed(Outgoing, &mut buf);
        let Frame::Pdu(pdu) = &feed.frames[0] else {
            panic!()
        };
        let out = s.rewrite(Outgoing, pdu, Rewrite::Text("**** it")).unwrap();
        assert_eq!(&out[..], b"PART #c :**** it\r\n");
    }

    #[test]
    fn action_and_dcc_send() {
        let mut s = IrcSession::default();
        let ev = run(
            &mut s,
            Direction::Outgoing,
            "PRIVMSG #c :\x01ACTION waves\x01\r\n",
        );
        assert_eq!(ev[0].event_data(), "/me waves");
        assert_eq!(ev[0].kind, EventType::Message);
        let ev = run(
            &mut s,
            Direction::Outgoing,
            "PRIVMSG bob :\x01DCC SEND \"my file.txt\" 2130706433 5000 1234\x01\r\n",
        );
        assert_eq!(ev[0].kind, EventType::File);
        assert_eq!(ev[0].text, "my file.txt 1234 bytes");
    }

    #[test]
    fn partial_lines_wait_and_frames_cover_every_byte() {
        let mut s = IrcSession::default();
        let mut buf = BytesMut::from(&b"PING :x\r\nPRIVMSG bob :hel"[..]);
        let feed = s.feed(Direction::Outgoing, &mut buf);
        assert_eq!(
            feed.frames,
            vec![Frame::Opaque(Bytes::from_static(b"PING :x\r\n"))]
        );
        assert_eq!(&buf[..], b"PRIVMSG bob :hel");
        buf.extend_from_slice(b"lo\r\nPONG y\r\n");
        let feed = s.feed(Direction::Outgoing, &mut buf);
        assert_eq!(feed.frames.len(), 2);
        assert!(buf.is_empty());
    }

    #[test]
    fn overlong_message_loses_sync() {
        let mut s = IrcSession::default();
        let mut data = b"PRIVMSG bob :".to_vec();
        data.resize(MAX_LINE + 1, b'a');
        let mut buf = BytesMut::from(&data[..]);
        let feed = s.feed(Direction::Outgoing, &mut buf);
        assert!(feed.frames.is_empty());
        let Some(Stop::TooLarge { conversation, .. }) = feed.stop else {
            panic!("{:?}", feed.stop)
        };
        assert_eq!(conversation.unwrap().remote_id, "bob");
    }

    #[test]
    fn overlong_message_after_complete_lines_keeps_them() {
        let mut s = IrcSession::default();
        let mut data = b"PRIVMSG bob :first\r\nPRIVMSG bob :".to_vec();
        data.resize(MAX_LINE + 100, b'a');
        let mut buf = BytesMut::from(&data[..]);
        let feed = s.feed(Direction::Outgoing, &mut buf);
        assert_eq!(feed.frames.len(), 1);
        assert!(matches!(feed.stop, Some(Stop::TooLarge { .. })));
        assert_eq!(buf.len(), MAX_LINE + 100 - b"PRIVMSG bob :first\r\n".len());
    }

    #[test]
    fn an_overlong_message_that_came_whole_stops_inspection_too() {
        let mut s = IrcSession::default();
        let mut data = b"PRIVMSG bob :first\r\nPRIVMSG bob :".to_vec();
        data.resize(MAX_LINE + 100, b'a');
        data.extend_from_slice(b"\r\nPRIVMSG bob :after\r\n");
        let mut buf = BytesMut::from(&data[..]);
        let mut feed = s.feed(Direction::Outgoing, &mut buf);
        let stop = feed.stop.take();
        let texts: Vec<String> = events_of(feed).into_iter().map(|e| e.text).collect();
        assert_eq!(texts, ["first"]);
        let Some(Stop::TooLarge { conversation, .. }) = stop else {
            panic!("{stop:?}")
        };
        assert_eq!(conversation.unwrap().remote_id, "bob");
        // The long line and what follows are left for the relay to forward.
        assert_eq!(buf.len(), data.len() - b"PRIVMSG bob :first\r\n".len());
        // A long line the core does not act on is no reason to stop.
        let mut s = IrcSession::default();
        let mut data = b"PING :".to_vec();
        data.resize(MAX_LINE + 100, b'a');
        data.extend_from_slice(b"\r\n");
        let mut buf = BytesMut::from(&data[..]);
        assert!(s.feed(Direction::Outgoing, &mut buf).stop.is_none());
    }

    #[test]
    fn lines_that_cannot_matter_are_not_held_back() {
        let mut s = IrcSession::default();
        let mut buf = BytesMut::from(&b":srv 372 me :- a long MOTD li"[..]);
        let feed = s.feed(Direction::Incoming, &mut buf);
        assert_eq!(
            feed.frames,
            vec![Frame::Opaque(Bytes::from_static(
                b":srv 372 me :- a long MOTD li"
            ))]
        );
        buf.extend_from_slice(b"ne\r\n:bob!b@h PRIVMSG me :hi");
        let feed = s.feed(Direction::Incoming, &mut buf);
        assert_eq!(
            feed.frames,
            vec![Frame::Opaque(Bytes::from_static(b"ne\r\n"))]
        );
        // A message waits for its end: it may be rewritten or blocked.
        assert_eq!(&buf[..], b":bob!b@h PRIVMSG me :hi");
        // So does a line whose command has not arrived yet.
        let mut buf = BytesMut::from(&b"@time=x :srv"[..]);
        assert!(s.feed(Direction::Incoming, &mut buf).frames.is_empty());
        // A first word that cannot become a command we act on is not held:
        // iperf3's cookie and its one-byte state replies, a TLS ClientHello.
        for partial in [
            &b"zzzzzzzzzzzzzz"[..],
            b"\x09",
            b"\x16\x03\x01\x02\x00",
            b"PRIVMSGX",
            b"NOTICEboard",
        ] {
            let mut buf = BytesMut::from(partial);
            let feed = IrcSession::default().feed(Direction::Incoming, &mut buf);
            assert_eq!(
                feed.frames,
                vec![Frame::Opaque(Bytes::copy_from_slice(partial))],
                "{partial:?}"
            );
        }
        // A command word we act on, so far, is held.
        for partial in [
            &b"P"[..],
            b"PRIV",
            b"privmsg",
            b"NOTICE",
            b"00",
            b":n!u@h NI",
        ] {
            let mut buf = BytesMut::from(partial);
            assert!(
                IrcSession::default()
                    .feed(Direction::Incoming, &mut buf)
                    .frames
                    .is_empty(),
                "{partial:?}"
            );
        }
    }

    #[test]
    fn identify_msg_flags_are_not_text() {
        let mut s = IrcSession::default();
        let welcome = b":srv 001 me :hi\r\n:srv CAP me ACK :multi-prefix identify-msg\r\n";
        let mut buf = BytesMut::from(&welcome[..]);
        assert!(s
            .feed(Direction::Incoming, &mut buf)
            .frames
            .iter()
            .all(|f| matches!(f, Frame::Opaque(_))));
        let line =
            b":bob!b@h PRIVMSG me :+\x01ACTION waves\x01\r\n:eve!e@h PRIVMSG #c :-+1 to that\r\n";
        let mut buf = BytesMut::from(&line[..]);
        let feed = s.feed(Direction::Incoming, &mut buf);
        let pdus: Vec<&Pdu> = feed
            .frames
            .iter()
            .filter_map(|f| match f {
                Frame::Pdu(p) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(pdus[0].events[0].event_data(), "/me waves");
        assert_eq!(pdus[1].events[0].event_data(), "eve: +1 to that");
        // A rewrite keeps the flag; an outgoing message has none.
        let out = s
            .rewrite(Direction::Incoming, pdus[1], Rewrite::Text("*1 to that"))
            .unwrap();
        assert_eq!(&out[..], b":eve!e@h PRIVMSG #c :-*1 to that\r\n");
        let notice = s.notice_to_client("bob", "logged").unwrap();
        assert_eq!(
            &notice[..],
            b":bob!imspector@imspector NOTICE me :+logged\r\n"
        );
        let mut buf = BytesMut::from(&b"PRIVMSG bob :+1\r\n"[..]);
        let Frame::Pdu(p) = &s.feed(Direction::Outgoing, &mut buf).frames[0] else {
            panic!()
        };
        assert_eq!(p.events[0].text, "+1");
        // CAPAB IDENTIFY-MSG, answered by 290, and the flag going away again.
        let mut s = IrcSession::default();
        let mut buf =
            BytesMut::from(&b":srv 290 me :IDENTIFY-MSG\r\n:a!b@c PRIVMSG me :+hi\r\n"[..]);
        let Frame::Pdu(p) = &s.feed(Direction::Incoming, &mut buf).frames[1] else {
            panic!()
        };
        assert_eq!(p.events[0].text, "hi");
        let mut buf =
            BytesMut::from(&b":srv CAP me DEL :identify-msg\r\n:a!b@c PRIVMSG me :+hi\r\n"[..]);
        let Frame::Pdu(p) = &s.feed(Direction::Incoming, &mut buf).frames[1] else {
            panic!()
        };
        assert_eq!(p.events[0].text, "+hi");
    }

    #[test]
    fn starttls_reply_switches_to_passthrough() {
        let mut s = IrcSession::default();
        let mut buf = BytesMut::from(&b":srv 670 me :STARTTLS successful\r\n\x16\x03\x01"[..]);
        let feed = s.feed(Direction::Incoming, &mut buf);
        assert_eq!(
            feed.stop,
            Some(Stop::Encrypted("IRC STARTTLS accepted (670)"))
        );
        assert_eq!(&buf[..], b"\x16\x03\x01");
    }

    fn framed_len(feed: &Feed) -> usize {
        let len = |frame: &Frame| match frame {
            Frame::Opaque(bytes) => bytes.len(),
            Frame::Pdu(pdu) => pdu.bytes.len(),
        };
        feed.frames.iter().map(len).sum()
    }

    #[test]
    fn random_bytes_before_the_welcome_are_not_irc_and_after_it_are_judged() {
        let noise = crate::synthetic::random_bytes(256 * 1024, 5);
        let mut s = IrcSession::default();
        let mut buf = BytesMut::from(&noise[..]);
        let feed = s.feed(Direction::Outgoing, &mut buf);
        let framed = framed_len(&feed);
        match feed.stop {
            Some(Stop::NotThisProtocol(why)) => {
                assert!(why.contains("before the server's welcome"), "{why}")
            }
            other => panic!("random bytes before 001 gave {other:?}"),
        }
        // Judged up to the bound (lines without a CR or a NUL do not count).
        assert!(
            (NOT_IRC_BEFORE_WELCOME..NOT_IRC_BEFORE_WELCOME * 5 / 4).contains(&framed),
            "{framed}"
        );
        assert_eq!(framed + buf.len(), noise.len());

        let mut s = IrcSession::default();
        run(&mut s, Direction::Incoming, ":srv 001 me :Welcome\r\n");
        let mut buf = BytesMut::from(&noise[..]);
        let feed = s.feed(Direction::Outgoing, &mut buf);
        assert_eq!(feed.stop, None);
        let framed = framed_len(&feed);
        assert_eq!(framed + buf.len(), noise.len());
        assert!(
            buf.len() < 1024,
            "a welcomed client's bytes are held: {}",
            buf.len()
        );
    }

    #[test]
    fn rewrite_keeps_framing_and_ctcp_wrapper() {
        let mut s = IrcSession::default();
        let mut buf = BytesMut::from(&b"@a=b :me!u@h PRIVMSG #c :\x01ACTION darn it\x01\r\n"[..]);
        let feed = s.feed(Direction::Outgoing, &mut buf);
        let Frame::Pdu(pdu) = &feed.frames[0] else {
            panic!()
        };
        let out = s
            .rewrite(Direction::Outgoing, pdu, Rewrite::Text("d**n it, longer"))
            .unwrap();
        assert_eq!(
            &out[..],
            b"@a=b :me!u@h PRIVMSG #c :\x01ACTION d**n it, longer\x01\r\n"
        );
        let out = s
            .rewrite(Direction::Outgoing, pdu, Rewrite::Text("x\r\nQUIT"))
            .unwrap();
        assert_eq!(
            &out[..],
            b"@a=b :me!u@h PRIVMSG #c :\x01ACTION x  QUIT\x01\r\n"
        );
    }

    #[test]
    fn rewrite_adds_the_colon_a_last_parameter_lacked() {
        let mut s = IrcSession::default();
        let mut buf = BytesMut::from(&b"PRIVMSG bob hello  \r\n"[..]);
        let feed = s.feed(Direction::Outgoing, &mut buf);
        let Frame::Pdu(pdu) = &feed.frames[0] else {
            panic!()
        };
        let out = s
            .rewrite(Direction::Outgoing, pdu, Rewrite::Text("h*llo there"))
            .unwrap();
        assert_eq!(&out[..], b"PRIVMSG bob :h*llo there\r\n");
    }

    fn texts(events: &[ChatEvent]) -> Vec<(String, String)> {
        events
            .iter()
            .map(|e| (e.remote_id.clone(), e.text.clone()))
            .collect()
    }

    #[test]
    fn a_bare_cr_line_is_judged_as_every_server_reads_it() {
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let mut s = IrcSession::default();
        // ngircd delivers the PRIVMSG after the PING; InspIRCd a PING.
        let ev = run(
            &mut s,
            Direction::Outgoing,
            "PING :x\rPRIVMSG victim :text\n",
        );
        assert_eq!(texts(&ev), pairs(&[("victim", "text")]));
        // ngircd: two messages; InspIRCd: one to #ok with the rest as text.
        let ev = run(
            &mut s,
            Direction::Outgoing,
            "PRIVMSG #ok :hi\rPRIVMSG #forbidden :text\n",
        );
        assert_eq!(
            texts(&ev),
            pairs(&[
                ("#ok", "hiPRIVMSG #forbidden :text"),
                ("#ok", "hi"),
                ("#forbidden", "text")
            ])
        );
        // InspIRCd joins the halves of a word and turns NUL into a space.
        let ev = run(&mut s, Direction::Outgoing, "PRIVMSG bob :da\rrn\0it\r\n");
        assert_eq!(texts(&ev), pairs(&[("bob", "darn it"), ("bob", "da")]));
        // A CR inside the command word: InspIRCd reads PRIVMSG.
        let ev = run(&mut s, Direction::Outgoing, "PRIV\rMSG bob :x\r\n");
        assert_eq!(texts(&ev), pairs(&[("bob", "x")]));
    }

    #[test]
    fn a_bare_cr_among_ordinary_lines_of_one_read_is_judged() {
        // As many CRs as LFs in the read: the last line ends in a bare LF.
        let mut s = IrcSession::default();
        let ev = run(
            &mut s,
            Direction::Outgoing,
            "PING :a\r\nPING :x\rPRIVMSG victim :text\r\nPONG y\n",
        );
        assert_eq!(texts(&ev), vec![("victim".into(), "text".into())]);
    }

    #[test]
    fn a_bare_cr_in_the_held_front_of_a_line_is_judged_once_it_ends() {
        let mut s = IrcSession::default();
        let mut buf = BytesMut::from(&b"PRIVMSG #ok :hi\rPRIVMSG #forbidden :te"[..]);
        let held = s.feed(Direction::Outgoing, &mut buf);
        assert!(held.frames.is_empty(), "a PRIVMSG waits for its end");
        buf.extend_from_slice(b"xt\r\nPRIVMSG #ok :next\r\n");
        let ev = events_of(s.feed(Direction::Outgoing, &mut buf));
        let expected = [
            ("#ok", "hiPRIVMSG #forbidden :text"),
            ("#ok", "hi"),
            ("#forbidden", "text"),
            ("#ok", "next"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(texts(&ev), expected);
    }

    #[test]
    fn a_bare_cr_ends_a_line_that_was_forwarded_as_it_came() {
        let mut s = IrcSession::default();
        let mut buf = BytesMut::from(&b"PING :x"[..]);
        let feed = s.feed(Direction::Outgoing, &mut buf);
        assert_eq!(
            feed.frames,
            vec![Frame::Opaque(Bytes::from_static(b"PING :x"))]
        );
        buf.extend_from_slice(b"\rPRIVMSG victim :text\n");
        let feed = s.feed(Direction::Outgoing, &mut buf);
        assert_eq!(feed.frames[0], Frame::Opaque(Bytes::from_static(b"\r")));
        let Frame::Pdu(pdu) = &feed.frames[1] else {
            panic!("{:?}", feed.frames)
        };
        assert_eq!(texts(&pdu.events), vec![("victim".into(), "text".into())]);
        // A partial line whose next reading may be a message is held.
        let mut buf = BytesMut::from(&b"PING :x\rPRIV"[..]);
        assert!(IrcSession::default()
            .feed(Direction::Outgoing, &mut buf)
            .frames
            .is_empty());
    }

    #[test]
    fn a_line_peers_read_differently_is_never_rewritten() {
        // The second is nothing to ngircd, and a topic to InspIRCd.
        for (dir, line) in [
            (Direction::Outgoing, &b"PRIVMSG bob :da\rrn\n"[..]),
            (Direction::Incoming, &b"\0\r:\x00332 me #c :news\n"[..]),
        ] {
            let mut s = IrcSession::default();
            let mut buf = BytesMut::from(line);
            let feed = s.feed(dir, &mut buf);
            let Frame::Pdu(pdu) = &feed.frames[0] else {
                panic!("{line:?} gave {feed:?}")
            };
            assert_eq!(s.rewrite(dir, pdu, Rewrite::Text("**")), None, "{line:?}");
        }
    }

    #[test]
    fn irregular_whitespace() {
        let mut s = IrcSession::default();
        let ev = run(
            &mut s,
            Direction::Outgoing,
            " PRIVMSG          #BROTEST      :test\r\n",
        );
        assert_eq!(ev[0].remote_id, "#BROTEST");
        assert_eq!(ev[0].text, "test");
    }
}
