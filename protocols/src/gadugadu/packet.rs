//! Packet type numbers, with libgadu's names. Some numbers mean different
//! packets in the two directions (0x0b is GG_SEND_MSG from a client and
//! GG_DISCONNECTING from a server), so they are only ever matched with a direction.

// Client to server.
pub const LOGIN: u32 = 0x0c;
pub const LOGIN_EXT: u32 = 0x13;
pub const LOGIN60: u32 = 0x15;
pub const LOGIN70: u32 = 0x19;
pub const LOGIN80BETA: u32 = 0x29;
pub const LOGIN80: u32 = 0x31;
pub const LOGIN105: u32 = 0x83;
pub const SEND_MSG: u32 = 0x0b;
pub const SEND_MSG80: u32 = 0x2d;
pub const SEND_MSG110: u32 = 0x7d;
pub const CHAT_SEND_MSG: u32 = 0x8d;

// Server to client.
pub const RECV_MSG: u32 = 0x0a;
pub const RECV_MSG80: u32 = 0x2e;
pub const RECV_OWN_MSG: u32 = 0x5a;
pub const RECV_MSG110: u32 = 0x7e;
pub const RECV_OWN_MSG110: u32 = 0x82;
pub const CHAT_RECV_MSG: u32 = 0x88;
pub const CHAT_RECV_OWN_MSG: u32 = 0x8e;
pub const LOGIN110_OK: u32 = 0x9d;
pub const PONG110: u32 = 0xa1;
pub const TRANSFER_INFO: u32 = 0xa0;

// Both ways.
pub const TYPING_NOTIFICATION: u32 = 0x59;
pub const DCC7_NEW: u32 = 0x20;
