//! A complete stanza as a small tree, read by quick-xml in the namespace
//! context of its stream header. Only the predefined entities and character
//! references are decoded; any other reference stays in the text as written
//! (XMPP forbids DTDs, so nothing could define it).

use std::ops::Range;

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::{NamespaceResolver, ResolveResult};
use quick_xml::{Reader, XmlVersion};

/// Elements nested deeper than this are not kept (no stanza we read goes
/// beyond 7): a deep tree costs stack when it is dropped.
const MAX_DEPTH: usize = 24;

#[derive(Debug, Default, Clone)]
pub struct Element {
    /// The resolved namespace, empty when unbound.
    pub ns: String,
    pub name: String,
    /// Attributes by qualified name, values decoded.
    attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// The character data directly inside, decoded (CDATA included).
    pub text: String,
    /// The bytes between the start and the end tag (an empty range at the end
    /// of a self-closed tag).
    pub inner: Range<usize>,
    /// The whole element.
    pub outer: Range<usize>,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.ns == ns && c.name == name)
    }

    pub fn children_named<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children
            .iter()
            .filter(move |c| c.ns == ns && c.name == name)
    }

    /// The first child named `name` whose namespace starts with `prefix`
    /// (versioned namespaces such as `urn:xmpp:mam:2`).
    pub fn child_ns_prefix(&self, prefix: &str, name: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.name == name && c.ns.starts_with(prefix))
    }

    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }
}

/// Parse one complete element. `header` is the stream's start tag, whose
/// namespace declarations apply.
pub fn parse(header: &str, bytes: &[u8]) -> Result<Element, String> {
    let mut resolver = NamespaceResolver::default();
    let mut header_reader = Reader::from_str(header);
    if let Ok(Event::Start(start)) = header_reader.read_event() {
        resolver.push(&start).map_err(|e| e.to_string())?;
    }
    let mut reader = Reader::from_reader(bytes);
    let mut open: Vec<Element> = Vec::new();
    // Elements being skipped below MAX_DEPTH.
    let mut skipped = 0usize;
    loop {
        let start = reader.buffer_position() as usize;
        let event = reader
            .read_event()
            .map_err(|e| format!("{e} at byte {}", reader.error_position()))?;
        let end = reader.buffer_position() as usize;
        match event {
            Event::Start(tag) => {
                resolver.push(&tag).map_err(|e| e.to_string())?;
                if skipped > 0 || open.len() >= MAX_DEPTH {
                    skipped += 1;
                    continue;
                }
                let mut element = element(&resolver, &tag);
                element.outer.start = start;
                element.inner = end..end;
                open.push(element);
            }
            Event::Empty(tag) => {
                resolver.push(&tag).map_err(|e| e.to_string())?;
                let mut element = element(&resolver, &tag);
                resolver.pop();
                if skipped > 0 || open.len() >= MAX_DEPTH {
                    continue;
                }
                element.outer = start..end;
                element.inner = end..end;
                if let Some(done) = attach(&mut open, element) {
                    return Ok(done);
                }
            }
            Event::End(_) => {
                resolver.pop();
                if skipped > 0 {
                    skipped -= 1;
                    continue;
                }
                let mut element = open.pop().ok_or("an end tag without its start")?;
                element.inner.end = start;
                element.outer.end = end;
                if let Some(done) = attach(&mut open, element) {
                    return Ok(done);
                }
            }
            Event::Text(text) => push_text(&mut open, skipped, &text.xml10_content()),
            Event::CData(data) => push_text(&mut open, skipped, &data.xml10_content()),
            Event::GeneralRef(reference) => {
                push_text(&mut open, skipped, &decode_reference(&reference))
            }
            Event::DocType(_) => return Err("a DTD inside a stanza".into()),
            Event::Eof => return Err("the element is not complete".into()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
}

fn element(resolver: &NamespaceResolver, tag: &BytesStart<'_>) -> Element {
    let (ns, local) = resolver.resolve_element(tag.name());
    let ns = match ns {
        ResolveResult::Bound(ns) => ns.as_ref().to_string(),
        ResolveResult::Unbound | ResolveResult::Unknown(_) => String::new(),
    };
    let attrs = tag
        .attributes()
        .with_checks(false)
        .flatten()
        .map(|a| {
            let value = a
                .normalized_value(XmlVersion::Implicit1_0)
                .map(|v| v.into_owned())
                .unwrap_or_else(|_| a.value.to_string());
            (a.key.as_ref().to_string(), value)
        })
        .collect();
    Element {
        ns,
        name: local.as_ref().to_string(),
        attrs,
        ..Element::default()
    }
}

/// Add a finished element to its parent; the root is returned.
fn attach(open: &mut [Element], element: Element) -> Option<Element> {
    match open.last_mut() {
        Some(parent) => {
            parent.children.push(element);
            None
        }
        None => Some(element),
    }
}

fn push_text(open: &mut [Element], skipped: usize, text: &str) {
    if skipped == 0 {
        if let Some(element) = open.last_mut() {
            element.text.push_str(text);
        }
    }
}

/// `&lt;` and the other predefined entities, and character references; any
/// other reference is kept as written.
fn decode_reference(reference: &BytesRef<'_>) -> String {
    let name: &str = reference;
    if reference.is_char_ref() {
        if let Ok(Some(c)) = reference.resolve_char_ref() {
            return c.to_string();
        }
    }
    match name {
        "lt" => "<".into(),
        "gt" => ">".into(),
        "amp" => "&".into(),
        "apos" => "'".into(),
        "quot" => "\"".into(),
        _ => format!("&{name};"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:j='urn:x'>";

    #[test]
    fn namespaces_come_from_the_header_and_the_stanza() {
        let bytes = b"<message to='a@b'><j:x/><body>a &amp; b &#233; &lol; <![CDATA[<c>]]></body><p:q xmlns:p='urn:p'/></message>";
        let m = parse(HEADER, bytes).unwrap();
        assert!(m.is("jabber:client", "message"));
        assert_eq!(m.attr("to"), Some("a@b"));
        assert!(m.child("urn:x", "x").is_some());
        assert!(m.child("urn:p", "q").is_some());
        let body = m.child("jabber:client", "body").unwrap();
        assert_eq!(body.text, "a & b é &lol; <c>");
        assert_eq!(
            &bytes[body.inner.clone()],
            &b"a &amp; b &#233; &lol; <![CDATA[<c>]]>"[..]
        );
        assert_eq!(m.outer, 0..bytes.len());
    }

    #[test]
    fn a_deep_tree_is_cut_and_bad_xml_is_an_error() {
        let deep = format!("<iq>{}{}</iq>", "<a>".repeat(5000), "</a>".repeat(5000));
        let iq = parse(HEADER, deep.as_bytes()).unwrap();
        assert_eq!(iq.children.len(), 1);
        assert!(parse(HEADER, b"<message><body></message>").is_err());
        assert!(parse(HEADER, b"<message><!DOCTYPE x></message>").is_err());
    }
}
