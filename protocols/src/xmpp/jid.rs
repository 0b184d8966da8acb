//! JIDs (RFC 7622): `[local@]domain[/resource]`.

/// The JID without its resource, lower-cased: the original logged XMPP ids
/// this way, and local and domain parts compare without case.
pub fn bare(jid: &str) -> String {
    split(jid).0.to_lowercase()
}

/// The resource of a full JID (a MUC occupant's nick), if any.
pub fn resource(jid: &str) -> Option<&str> {
    split(jid).1
}

/// The bare part and the resource. The resource starts at the first `/` and
/// may itself hold `/` and `@`.
fn split(jid: &str) -> (&str, Option<&str>) {
    match jid.split_once('/') {
        Some((bare, resource)) if !resource.is_empty() => (bare, Some(resource)),
        Some((bare, _)) => (bare, None),
        None => (jid, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_and_resource() {
        assert_eq!(bare("Tom@CS-XMPP.lan/darkstar"), "tom@cs-xmpp.lan");
        assert_eq!(bare("room@conf.example"), "room@conf.example");
        assert_eq!(resource("room@conf.example/Bob/x@y"), Some("Bob/x@y"));
        assert_eq!(resource("example.org/"), None);
        assert_eq!(resource("example.org"), None);
    }
}
