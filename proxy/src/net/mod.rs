//! Sockets: the listener, the original destination of a redirected connection,
//! and the upstream connection. The only module with platform socket options.

pub mod cidr;

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};

/// How the firewall hands connections to the listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Interception {
    /// iptables REDIRECT: the original destination is kept by conntrack.
    #[default]
    Redirect,
    /// TPROXY: the listener is transparent and each connection keeps its
    /// original destination as its local address.
    Tproxy,
}

/// Bind the listening socket (before daemonizing and dropping privileges).
/// Without an address: all addresses, IPv6 and IPv4 on one socket where the
/// kernel allows, else IPv4 only.
pub fn bind_listener(
    addr: Option<IpAddr>,
    port: u16,
    interception: Interception,
) -> io::Result<std::net::TcpListener> {
    let transparent = interception == Interception::Tproxy;
    match addr {
        Some(ip) => bind_one(SocketAddr::new(ip, port), false, transparent),
        None => bind_one(
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
            true,
            transparent,
        )
        .or_else(|_| {
            bind_one(
                SocketAddr::new([0, 0, 0, 0].into(), port),
                false,
                transparent,
            )
        }),
    }
}

fn bind_one(
    addr: SocketAddr,
    dual_stack: bool,
    transparent: bool,
) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    if transparent {
        // A dual-stack socket takes IPv4 connections too: it needs both options.
        if addr.is_ipv4() || dual_stack {
            socket.set_ip_transparent(true)?;
        }
        if addr.is_ipv6() {
            set_ipv6_transparent(&socket)?;
        }
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn set_ipv6_transparent(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket, and a pointer to an int of the length given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_IPV6,
            libc::IPV6_TRANSPARENT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Where the client meant to connect before the firewall sent it to us.
pub fn original_destination(
    stream: &TcpStream,
    interception: Interception,
) -> io::Result<SocketAddr> {
    if interception == Interception::Tproxy {
        return stream.local_addr();
    }
    let sock = SockRef::from(stream);
    let peer_is_v4 = match stream.peer_addr()? {
        SocketAddr::V4(_) => true,
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().is_some(),
    };
    // IPv4 clients (also on a dual-stack socket) answer SO_ORIGINAL_DST,
    // IPv6 clients IP6T_SO_ORIGINAL_DST.
    let addr = if peer_is_v4 {
        sock.original_dst()?
    } else {
        sock.original_dst_ipv6()?
    };
    addr.as_socket()
        .ok_or_else(|| io::Error::other("original destination is not an IP address"))
}

/// Options for connections to the real servers.
#[derive(Debug, Clone, Default)]
pub struct Upstream {
    pub interface: Option<String>,
    pub mark: Option<u32>,
    pub timeout: Duration,
}

impl Upstream {
    pub async fn connect(&self, dst: SocketAddr) -> io::Result<TcpStream> {
        let socket = match dst {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        let sock = SockRef::from(&socket);
        if let Some(interface) = &self.interface {
            sock.bind_device(Some(interface.as_bytes()))?;
        }
        if let Some(mark) = self.mark {
            sock.set_mark(mark)?;
        }
        match tokio::time::timeout(self.timeout, socket.connect(dst)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {:?}", self.timeout),
            )),
        }
    }
}

/// An IPv4-mapped IPv6 address (a v4 client on a dual-stack socket) as IPv4.
pub fn plain_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// True when `dst` is our own listener: connecting there would loop.
pub fn is_own_listener(dst: SocketAddr, local: SocketAddr, port: u16) -> bool {
    let plain = plain_ip;
    dst.port() == port
        && (plain(dst.ip()) == plain(local.ip())
            || dst.ip().is_loopback()
            || dst.ip().is_unspecified())
}

/// `IP:port`, `[v6]:port`, with IPv4-mapped addresses shown as IPv4.
pub fn display_addr(addr: SocketAddr) -> String {
    SocketAddr::new(plain_ip(addr.ip()), addr.port()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_detection() {
        let local: SocketAddr = "10.0.0.1:16667".parse().unwrap();
        assert!(is_own_listener(
            "10.0.0.1:16667".parse().unwrap(),
            local,
            16667
        ));
        assert!(is_own_listener(
            "127.0.0.1:16667".parse().unwrap(),
            local,
            16667
        ));
        assert!(!is_own_listener(
            "10.0.0.2:16667".parse().unwrap(),
            local,
            16667
        ));
        assert!(!is_own_listener(
            "10.0.0.1:6667".parse().unwrap(),
            local,
            16667
        ));
    }

    #[test]
    fn mapped_addresses_display_as_ipv4() {
        let a: SocketAddr = "[::ffff:192.168.0.4]:62013".parse().unwrap();
        assert_eq!(display_addr(a), "192.168.0.4:62013");
        let b: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
        assert_eq!(display_addr(b), "[2001:db8::1]:5");
    }
}
