//! The XHTML parts of GG 8.0 and GG 11 messages: the text a user sees, and the
//! markup that shows a plain text.

/// The text of a message's markup: tags dropped, `<br>` as a line break,
/// character references resolved.
pub fn to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(i) = rest.find(['<', '&']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with('<') {
            let Some(end) = rest.find('>') else {
                // An unclosed tag hides the rest, as in a browser.
                return out;
            };
            if is_line_break(&rest[1..end]) {
                out.push('\n');
            }
            rest = &rest[end + 1..];
        } else {
            match reference(rest) {
                Some((c, len)) => {
                    out.push(c);
                    rest = &rest[len..];
                }
                None => {
                    out.push('&');
                    rest = &rest[1..];
                }
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_line_break(tag: &str) -> bool {
    let name = tag.trim_end_matches('/').trim();
    name.eq_ignore_ascii_case("br")
}

/// The character a reference at the start of `s` stands for, and its length.
fn reference(s: &str) -> Option<(char, usize)> {
    let end = s.bytes().take(12).position(|b| b == b';')?;
    let name = &s[1..end];
    let c = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        _ => {
            let num = name.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse().ok()?,
            };
            // A NUL would end the C string the clients keep the text in.
            char::from_u32(code).filter(|&c| c != '\0')?
        }
    };
    Some((c, end + 1))
}

/// Markup that shows `text` as it is, line breaks included.
pub fn from_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("<br>"),
            '\0' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_becomes_text() {
        assert_eq!(
            to_text("<span style=\"color:#000000\"><b>T</b>e&amp;s<br/>t &#261;&#x119;</span>"),
            "Te&s\nt ąę"
        );
        assert_eq!(
            to_text("a &bogus; b & c &#0; <unclosed"),
            "a &bogus; b & c &#0; "
        );
    }

    #[test]
    fn text_survives_a_round_trip_through_markup() {
        for text in [
            "plain",
            "<b>not bold</b> & \"q\" 'a'\nnext",
            "&lt; literally",
        ] {
            assert_eq!(to_text(&from_text(text)), text);
        }
    }
}
