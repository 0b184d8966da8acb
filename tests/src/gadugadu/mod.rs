//! Gadu-Gadu: a test server of our own and real clients (libgadu, and
//! libpurple through bitlbee).

pub mod bitlbee;
pub mod libgadu;
pub mod server;

pub use libgadu::GgClient;
pub use server::GgServer;

/// The protocol generation a client logs in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Protocol version 0x2e: GG_LOGIN80, GG_SEND_MSG80.
    Gg80,
    /// libgadu's default: GG_LOGIN105, GG_SEND_MSG110 (protocol buffers).
    Gg11,
}
