//! ICQ/AIM over OSCAR: a test server of our own (MD5 login, BOS redirect with
//! a cookie, ICBM relay between users), a scripted client, and BarnOwl as the
//! real AIM client.

pub mod barnowl;
pub mod client;
pub mod server;
pub mod wire;

pub use client::OscarClient;
pub use server::OscarServer;

/// The login port every AIM client knows.
pub const LOGIN_PORT: u16 = 5190;
/// The port the login reply sends clients to for BOS: another one, so the
/// proxy must cover it too (`icq_ports`).
pub const BOS_PORT: u16 = 5191;
/// The port 01/05 sends clients to for a chat room.
pub const CHAT_PORT: u16 = 5192;
