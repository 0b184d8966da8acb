//! Changing a message's text, and writing notices, as XML.

use std::ops::Range;

use super::ns;
use super::tree::Element;

/// Escape text for element content; characters XML 1.0 cannot carry at all
/// are dropped (they would break the stream).
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if allowed_in_xml(c) => out.push(c),
            _ => {}
        }
    }
    out
}

/// Escape text for an attribute value in single or double quotes.
pub fn escape_attribute(text: &str) -> String {
    escape_text(text)
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

fn allowed_in_xml(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// `stanza` with every `<body>` of `message` (an element of it) holding
/// `text`, and its XHTML-IM alternative removed (clients would show that
/// instead). Everything else stays byte for byte. `None` when the message has
/// no body with an end tag to fill.
pub fn replace_bodies(stanza: &[u8], message: &Element, text: &str) -> Option<Vec<u8>> {
    let escaped = escape_text(text);
    let mut edits: Vec<(Range<usize>, &str)> = message
        .children_named(&message.ns, "body")
        .filter(|body| body.inner.end < body.outer.end)
        .map(|body| (body.inner.clone(), escaped.as_str()))
        .collect();
    if edits.is_empty() {
        return None;
    }
    edits.extend(
        message
            .children_named(ns::XHTML_IM, "html")
            .map(|html| (html.outer.clone(), "")),
    );
    edits.sort_by_key(|(range, _)| range.start);
    let mut out = Vec::with_capacity(stanza.len() + escaped.len());
    let mut at = 0;
    for (range, replacement) in edits {
        out.extend_from_slice(&stanza[at..range.start]);
        out.extend_from_slice(replacement.as_bytes());
        at = range.end;
    }
    out.extend_from_slice(&stanza[at..]);
    Some(out)
}

/// A message from `from` to `to` for the local client.
pub fn notice(from: &str, to: &str, text: &str, groupchat: bool) -> String {
    format!(
        "<message type='{}' from='{}' to='{}'><body>{}</body></message>",
        if groupchat { "groupchat" } else { "chat" },
        escape_attribute(from),
        escape_attribute(to),
        escape_text(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape_text("a<b>&c\u{1}\n"), "a&lt;b&gt;&amp;c\n");
        assert_eq!(escape_attribute("o'k\""), "o&apos;k&quot;");
    }
}
