//! The XML namespaces the XMPP core looks at.

pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";

pub const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
pub const MUC: &str = "http://jabber.org/protocol/muc";
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const DELAY: &str = "urn:xmpp:delay";
pub const DELAY_LEGACY: &str = "jabber:x:delay";
pub const CARBONS: &str = "urn:xmpp:carbons:2";
pub const FORWARD: &str = "urn:xmpp:forward:0";
/// `urn:xmpp:mam:0`, `:1`, `:2`.
pub const MAM_PREFIX: &str = "urn:xmpp:mam:";
pub const XHTML_IM: &str = "http://jabber.org/protocol/xhtml-im";

pub const OOB_X: &str = "jabber:x:oob";
pub const OOB_IQ: &str = "jabber:iq:oob";
pub const SI: &str = "http://jabber.org/protocol/si";
pub const SI_FILE: &str = "http://jabber.org/protocol/si/profile/file-transfer";
pub const JINGLE: &str = "urn:xmpp:jingle:1";
/// `urn:xmpp:jingle:apps:file-transfer:3`, `:4`, `:5`.
pub const JINGLE_FILE_PREFIX: &str = "urn:xmpp:jingle:apps:file-transfer:";
pub const JINGLE_RTP: &str = "urn:xmpp:jingle:apps:rtp:1";
pub const JINGLE_MESSAGE: &str = "urn:xmpp:jingle-message:0";
pub const UPLOAD: &str = "urn:xmpp:http:upload:0";
pub const UPLOAD_LEGACY: &str = "urn:xmpp:http:upload";

/// OMEMO 0.3 (the one Conversations and Dino speak).
pub const OMEMO_LEGACY: &str = "eu.siacs.conversations.axolotl";
/// `urn:xmpp:omemo:1`, `:2`.
pub const OMEMO_PREFIX: &str = "urn:xmpp:omemo:";
pub const OPENPGP: &str = "urn:xmpp:openpgp:0";
pub const PGP_LEGACY: &str = "jabber:x:encrypted";
