//! `imspector-rules`: the firewall rules that send IM traffic to imspector,
//! for iptables, iptables-restore, nftables and pf.
//!
//! [`model`] decides which chains and rules exist; [`render`] writes them in
//! each format; [`cli`] reads flags and imspector.conf; [`snippets`] lists the
//! ready-made files in iptables/snippets.

pub mod cli;
pub mod model;
pub mod render;
pub mod snippets;
