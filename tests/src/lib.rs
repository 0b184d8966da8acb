//! The end-to-end rig: three network namespaces (client, gateway, server) joined
//! by veth pairs, real iptables rules in the gateway, the imspector binary of this
//! workspace running there, and real servers and clients as processes.
//!
//! Every rig makes its own uniquely named namespaces and subnets, so tests run in
//! parallel, and removes them when dropped, also when a test fails. Protocols add
//! servers and clients (see [`irc`]); the rig stays the same. Needs root.

pub mod chromium;
pub mod databases;
pub mod gadugadu;
pub mod icap;
pub mod imspector;
pub mod irc;
pub mod netns;
pub mod oscar;
pub mod process;
pub mod prometheus;
pub mod python;
pub mod replay;
pub mod rig;
pub mod scripted;
pub mod squid;
pub mod synapse;
pub mod tls;
pub mod tmpfs;
pub mod tshark;
pub mod wait;
pub mod web;
pub mod xmpp;

pub use imspector::Imspector;
pub use netns::Netns;
pub use rig::Rig;
