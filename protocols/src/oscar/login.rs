//! Who the local user is: the screen name or UIN the client signs on with,
//! and the cookies that carry it from the login connection to the next ones.
//!
//! - login connection, MD5: 17/06 and 17/02 (client) name the user in TLV
//!   0x0001; 17/03 (server) answers with TLV 0x0001, the BOS address in TLV
//!   0x0005 and the cookie in TLV 0x0006;
//! - login connection, old ICQ: the client's channel-1 FLAP has TLV 0x0001
//!   (and the roasted password, never read), the server answers on channel 4
//!   with TLVs 0x0001, 0x0005, 0x0006;
//! - BOS or service connection: the client's channel-1 FLAP presents TLV
//!   0x0006, the cookie; 01/05 (server) hands out a cookie for a service
//!   connection (a chat room); 01/0F tells the user's own screen name.

use super::tlv::{self, Reader};

pub const AUTH_LOGIN: u16 = 0x0002;
pub const AUTH_REPLY: u16 = 0x0003;
pub const AUTH_KEY_REQUEST: u16 = 0x0006;
pub const SERVICE_REDIRECT: u16 = 0x0005;
pub const SELF_INFO: u16 = 0x000f;

const SCREEN_NAME: u16 = 0x0001;
const COOKIE: u16 = 0x0006;

/// What a sign-on PDU tells.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ids<'a> {
    pub screen_name: Option<&'a [u8]>,
    pub cookie: Option<&'a [u8]>,
}

/// A TLV chain that names the user and/or carries a cookie.
pub fn from_tlvs(chain: &[u8]) -> Result<Ids<'_>, String> {
    let tlvs = tlv::chain(chain).map_err(|e| format!("sign-on: {e}"))?;
    Ok(Ids {
        screen_name: tlv::find(&tlvs, SCREEN_NAME).filter(|n| !n.is_empty()),
        cookie: tlv::find(&tlvs, COOKIE).filter(|c| !c.is_empty()),
    })
}

/// The client's channel-1 FLAP: a 32-bit version, then TLVs.
pub fn sign_on(data: &[u8]) -> Result<Ids<'_>, String> {
    let rest = data
        .get(4..)
        .ok_or("sign-on FLAP shorter than its version")?;
    from_tlvs(rest)
}

/// 01/0F: the user's own info, screen name first.
pub fn self_info(body: &[u8]) -> Result<&[u8], String> {
    Reader::new(body).string8("self info screen name")
}

/// A screen name as logged: an ICQ UIN as its number, an AIM screen name in
/// lower case without spaces (how AIM itself compares them).
pub fn normalise(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if let Ok(uin) = name.parse::<u64>() {
        return uin.to_string();
    }
    name.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screen_names_are_normalised() {
        assert_eq!(normalise(b"Bob Smith"), "bobsmith");
        assert_eq!(normalise(b"157901844"), "157901844");
        assert_eq!(normalise(b"00042"), "42");
    }
}
