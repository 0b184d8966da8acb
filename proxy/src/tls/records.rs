//! TLS records on a relay socket. The relay reads and writes plaintext; a
//! [`Records`] turns what the socket brings into plaintext and the plaintext
//! the relay sends into records, with the session's rustls connection.
//!
//! It reads the socket only when asked and without waiting, as the plain relay
//! does, so an idle intercepted connection holds no read buffer of ours either.

use std::io::{self, BufRead, Read, Write};
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use tokio::net::tcp::OwnedReadHalf;

/// One side's TLS session after its handshake.
pub struct Records(Mutex<rustls::Connection>);

impl Records {
    pub fn new(conn: impl Into<rustls::Connection>) -> Self {
        let mut conn = conn.into();
        // The relay bounds what it hands over (one read of the other side);
        // rustls must take all of it so a write never stops half-way.
        conn.set_buffer_limit(None);
        Records(Mutex::new(conn))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, rustls::Connection> {
        self.0.lock().expect("TLS session lock poisoned")
    }

    /// Append to `buf` the plaintext that is ready, reading the socket without
    /// waiting. `Ok(0)` is the end of the stream (close_notify, or the peer
    /// closed the socket); `WouldBlock` means nothing is ready.
    pub fn try_read_buf(&self, socket: &OwnedReadHalf, buf: &mut BytesMut) -> io::Result<usize> {
        let mut conn = self.lock();
        loop {
            match conn.reader().fill_buf() {
                Ok(plain) => {
                    let n = plain.len();
                    buf.extend_from_slice(plain);
                    conn.reader().consume(n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed the socket without a close_notify: its end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            conn.read_tls(&mut TryRead(socket))?;
            conn.process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")))?;
        }
    }

    /// Records the session has to send by itself (an alert, a key update).
    pub fn wants_write(&self) -> bool {
        self.lock().wants_write()
    }

    /// Encrypt `plain` (in order) and return the records to write.
    pub fn seal(&self, plain: &[Bytes]) -> io::Result<Vec<u8>> {
        let mut conn = self.lock();
        for part in plain {
            conn.writer().write_all(part)?;
        }
        drain(&mut conn)
    }

    /// The close_notify alert, to send before a half-close.
    pub fn close(&self) -> io::Result<Vec<u8>> {
        let mut conn = self.lock();
        conn.send_close_notify();
        drain(&mut conn)
    }
}

fn drain(conn: &mut rustls::Connection) -> io::Result<Vec<u8>> {
    let mut records = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut records)?;
    }
    Ok(records)
}

/// The socket as `io::Read`, without waiting.
struct TryRead<'a>(&'a OwnedReadHalf);

impl Read for TryRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}
