//! Framing of the MSNP command stream: CRLF-terminated command lines, some of
//! which announce a payload of N bytes in their last argument.

/// Longest command line we buffer. Real lines are under 1 KiB (an `IRO` with a
/// long URL-encoded nick is the longest); anything longer is not MSNP.
pub const MAX_LINE: usize = 16 * 1024;

/// Largest payload we accept. Messages are limited to a few KiB by the servers;
/// contact lists (`ADL`, `GCF`) and MSNP21 notifications are the largest payloads
/// and stay well below this.
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// Commands that may carry a payload, with the least number of tokens (command
/// included) they have when they do. The last token is then the byte count.
/// Replies of the same name without a payload either have fewer tokens
/// (`QRY trid`) or end in a word (`ADL trid OK`).
const PAYLOAD_COMMANDS: &[(&str, usize)] = &[
    ("MSG", 2), // MSG trid ack len / MSG email nick len
    ("UUX", 3), // UUX trid len
    ("UBX", 3), // UBX email [network] len
    ("ADL", 3), // ADL trid len
    ("RML", 3), // RML trid len
    ("FQY", 3), // FQY trid len
    ("GCF", 3), // GCF trid [file] len
    ("QRY", 4), // QRY trid client-id len
    ("NOT", 2), // NOT len
    ("IPG", 2), // IPG len
    ("UBN", 4), // UBN email type len
    ("UUN", 5), // UUN trid email type len
    ("UUM", 6), // UUM trid email network type len
    ("UBM", 5), // UBM email network type len
    ("PAG", 4), // PAG trid email len
    ("SDG", 3), // SDG trid len
    ("NFY", 3), // NFY PUT|DEL len
    ("PUT", 3), // PUT trid [OK] len
    ("DEL", 3), // DEL trid [OK] len
    ("CNT", 3), // MSNP21 CNT trid [OK] len
    ("ATH", 3), // MSNP21 ATH trid [OK] len
    ("BND", 3), // MSNP21 BND trid [OK] len
    ("GET", 3), // MSNP21 GET trid len
];

/// One command line split into its tokens (without the line end).
#[derive(Debug)]
pub struct Line<'a> {
    pub tokens: Vec<&'a str>,
}

impl<'a> Line<'a> {
    /// Split a command line (line end included or not). Lines that are not
    /// UTF-8 have no tokens and are forwarded as they are.
    pub fn parse(line: &'a [u8]) -> Self {
        let tokens = match std::str::from_utf8(line) {
            Ok(text) => text
                .trim_end_matches(['\r', '\n'])
                .split(' ')
                .filter(|t| !t.is_empty())
                .collect(),
            Err(_) => Vec::new(),
        };
        Line { tokens }
    }

    pub fn command(&self) -> &'a str {
        self.tokens.first().copied().unwrap_or("")
    }

    pub fn arg(&self, i: usize) -> Option<&'a str> {
        self.tokens.get(i).copied()
    }

    /// The number of payload bytes that follow this line.
    pub fn payload_len(&self) -> Result<usize, String> {
        let cmd = self.command();
        let min_tokens = PAYLOAD_COMMANDS
            .iter()
            .find(|(name, _)| *name == cmd)
            .map(|(_, n)| *n)
            // Since MSNP13 some errors carry a payload: `241 trid len`.
            .or_else(|| (cmd.len() == 3 && cmd.bytes().all(|b| b.is_ascii_digit())).then_some(3));
        let Some(min_tokens) = min_tokens else {
            return Ok(0);
        };
        if self.tokens.len() < min_tokens {
            return Ok(0);
        }
        let last = self.tokens[self.tokens.len() - 1];
        if last.is_empty() || !last.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(0);
        }
        match last.parse::<usize>() {
            Ok(n) if n <= MAX_PAYLOAD => Ok(n),
            _ => Err(format!(
                "MSN {cmd} announces a payload of {last} bytes (limit {MAX_PAYLOAD})"
            )),
        }
    }

    /// The line re-encoded with a new payload length, CRLF-terminated.
    pub fn with_payload_len(&self, len: usize) -> Vec<u8> {
        let mut tokens: Vec<String> = self.tokens.iter().map(|t| t.to_string()).collect();
        if let Some(last) = tokens.last_mut() {
            *last = len.to_string();
        }
        let mut out = tokens.join(" ").into_bytes();
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// Whether the start of a command line, as far as it has arrived, can still be
/// an MSN command: three capital letters or digits, then a space or the line end.
pub fn may_be_command(partial: &[u8]) -> bool {
    let word = &partial[..partial.len().min(3)];
    word.iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && partial
            .get(3)
            .is_none_or(|b| matches!(b, b' ' | b'\r' | b'\n'))
}

/// An MSN address without its MSNP18+ endpoint (`;{guid}`, `;epid={guid}`) or
/// MSNP18+ network prefix (`1:`).
pub fn bare_address(addr: &str) -> &str {
    let addr = addr.split(';').next().unwrap_or(addr);
    match addr.split_once(':') {
        Some((net, rest)) if !net.is_empty() && net.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len(line: &str) -> Result<usize, String> {
        Line::parse(line.as_bytes()).payload_len()
    }

    #[test]
    fn payload_lengths_of_commands_and_their_replies() {
        assert_eq!(len("MSG 4 N 120\r\n"), Ok(120));
        assert_eq!(len("MSG bob@x.com Bob 97\r\n"), Ok(97));
        assert_eq!(len("QRY 12 PROD0090YUAUV{2B 32\r\n"), Ok(32));
        assert_eq!(len("QRY 12\r\n"), Ok(0));
        assert_eq!(len("ADL 7 OK\r\n"), Ok(0));
        assert_eq!(len("ADL 0 88\r\n"), Ok(88));
        assert_eq!(len("GCF 4 Shields.xml\r\n"), Ok(0));
        assert_eq!(len("NOT 1024\r\n"), Ok(1024));
        assert_eq!(len("PUT 9 OK 0\r\n"), Ok(0));
        assert_eq!(len("241 9 229\r\n"), Ok(229));
        assert_eq!(len("911 5\r\n"), Ok(0));
        assert_eq!(len("CHL 0 15570131571988941333\r\n"), Ok(0));
        assert_eq!(
            len("XFR 10 SB 1.2.3.4:1863 CKI 17262740.1050826919.32308\r\n"),
            Ok(0)
        );
    }

    #[test]
    fn oversized_lengths_lose_sync() {
        assert!(len("MSG 4 N 1048577\r\n").is_err());
        assert!(len("MSG 4 N 99999999999999999999999\r\n").is_err());
        assert_eq!(len(&format!("MSG 4 N {MAX_PAYLOAD}\r\n")), Ok(MAX_PAYLOAD));
    }

    #[test]
    fn addresses_lose_endpoint_and_network() {
        assert_eq!(bare_address("bob@x.com;{0ad4-11}"), "bob@x.com");
        assert_eq!(bare_address("1:bob@x.com;epid={0ad4-11}"), "bob@x.com");
        assert_eq!(bare_address("bob@x.com"), "bob@x.com");
    }

    #[test]
    fn length_rewrite_keeps_the_other_tokens() {
        let line = Line::parse(b"MSG  alice@x.com Alice%20A 12\r\n");
        assert_eq!(line.with_payload_len(7), b"MSG alice@x.com Alice%20A 7\r\n");
    }
}
