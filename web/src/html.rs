//! Page text: everything that came from the network or a URL goes through
//! [`esc`] (text and attribute values) or [`seg`] (one URL path segment).

use std::fmt::Write;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters left as they are in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Escaped for HTML text and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One URL path segment, percent-encoded (and so safe in an attribute).
pub fn seg(s: &str) -> String {
    let encoded = utf8_percent_encode(s, SEGMENT).to_string();
    // `.` and `..` would be taken as relative steps by the browser.
    match encoded.as_str() {
        "." => "%2E".to_string(),
        ".." => "%2E%2E".to_string(),
        _ => encoded,
    }
}

/// A path made of segments: `/a/b`.
pub fn path(segments: &[&str]) -> String {
    segments.iter().fold(String::new(), |mut p, s| {
        let _ = write!(p, "/{}", seg(s));
        p
    })
}

/// Who is looking, for the page header and its forms.
pub struct Viewer<'a> {
    pub name: &'a str,
    pub admin: bool,
    pub csrf: &'a str,
}

/// A whole page. `body` is HTML already escaped.
pub fn page(title: &str, viewer: Option<&Viewer<'_>>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(v) = viewer {
        let _ = write!(
            nav,
            r#"<nav><a href="/">Logs</a> <a href="/search">Search</a>{audit}
<form method="post" action="/logout" class="logout"><input type="hidden" name="csrf" value="{csrf}"><span>{name}</span> <button>Log out</button></form></nav>"#,
            audit = if v.admin {
                r#" <a href="/audit">Audit log</a>"#
            } else {
                ""
            },
            csrf = esc(v.csrf),
            name = esc(v.name),
        );
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - IMSpector</title><link rel="stylesheet" href="/static/style.css"></head>
<body>{nav}<main><h1>{title}</h1>
{body}</main></body></html>
"#,
        title = esc(title),
    )
}

/// A list of links, or a line saying there is nothing.
pub fn link_list(items: &[(String, String)], empty: &str) -> String {
    if items.is_empty() {
        return format!("<p>{}</p>", esc(empty));
    }
    let mut out = String::from("<ul class=\"tree\">");
    for (href, text) in items {
        let _ = write!(out, r#"<li><a href="{}">{}</a></li>"#, esc(href), esc(text));
    }
    out.push_str("</ul>");
    out
}

pub const STYLE: &str = include_str!("static/style.css");
pub const LIVE_JS: &str = include_str!("static/live.js");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_path_tricks() {
        assert_eq!(
            esc(r#"<script>"x"&'y'"#),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;"
        );
        assert_eq!(seg("../etc"), "..%2Fetc");
        assert_eq!(seg(".."), "%2E%2E");
        assert_eq!(seg("#chan"), "%23chan");
        assert_eq!(path(&["p", "IRC", "a b"]), "/p/IRC/a%20b");
    }
}
