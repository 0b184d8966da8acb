//! One end of a relayed connection: its socket, plain or with intercepted TLS
//! on it. The relay reads and writes plaintext through it either way.

use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;

use bytes::{Buf, Bytes, BytesMut};
use nix::fcntl::{splice, OFlag, SpliceFFlags};
use tokio::io::{AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::tls::Records;

pub struct Link {
    read: OwnedReadHalf,
    write: tokio::sync::Mutex<OwnedWriteHalf>,
    /// The TLS session when it is intercepted (boxed: it is large, and most
    /// links are plain).
    tls: Option<Box<Records>>,
}

impl Link {
    pub fn new(stream: TcpStream, tls: Option<Records>) -> Self {
        let (read, write) = stream.into_split();
        Link {
            read,
            write: tokio::sync::Mutex::new(write),
            tls: tls.map(Box::new),
        }
    }

    /// The socket back, for a handshake (a plain link only).
    pub fn into_stream(self) -> io::Result<TcpStream> {
        self.read
            .reunite(self.write.into_inner())
            .map_err(|_| io::Error::other("halves of different sockets"))
    }

    /// Append what can be read now to `buf`; `WouldBlock` when nothing can.
    pub fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match &self.tls {
            None => self.read.try_read_buf(buf),
            Some(tls) => tls.try_read_buf(&self.read, buf),
        }
    }

    /// Ready once the socket has bytes (or an end). Polled in place: tokio's
    /// `readable()` future is 184 bytes, twice in every idle connection's task.
    pub fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + '_ {
        std::future::poll_fn(|cx| self.read.as_ref().poll_read_ready(cx))
    }

    /// True when the TLS session has records of its own to send (after a read).
    pub fn wants_write(&self) -> bool {
        self.tls.as_deref().is_some_and(Records::wants_write)
    }

    /// Write every buffer of `bufs` in order (emptied on success).
    pub async fn send(&self, bufs: &mut Vec<Bytes>) -> io::Result<()> {
        let mut write = self.write.lock().await;
        match &self.tls {
            None => write_all_vectored(&mut write, bufs).await,
            Some(tls) => {
                // Encrypted under the write lock, so records go out in order.
                let records = tls.seal(bufs)?;
                bufs.clear();
                write.write_all(&records).await
            }
        }
    }

    /// Move what can be read now straight to `dst`'s socket through `pipe`,
    /// without copying it into the proxy: the number of bytes (0 at the end
    /// of the stream), `WouldBlock` when there are none. Plain links only.
    pub async fn splice_to(&self, dst: &Link, pipe: &Pipe) -> io::Result<usize> {
        let src = self.read.as_ref();
        let moved = src.try_io(Interest::READABLE, || {
            Ok(splice(
                src,
                None,
                &pipe.write,
                None,
                SPLICE_CHUNK,
                SPLICE_FLAGS,
            )?)
        })?;
        let write = dst.write.lock().await;
        let dst = write.as_ref();
        let mut left = moved;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                Ok(splice(&pipe.read, None, dst, None, left, SPLICE_FLAGS)?)
            }) {
                Ok(n) => left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }

    /// Whether the link carries plain TCP (no intercepted TLS).
    pub fn is_plain(&self) -> bool {
        self.tls.is_none()
    }

    /// End this direction: close_notify first under TLS, then the TCP half-close.
    pub async fn shutdown(&self) -> io::Result<()> {
        let mut write = self.write.lock().await;
        if let Some(tls) = &self.tls {
            write.write_all(&tls.close()?).await?;
        }
        write.shutdown().await
    }
}

/// The kernel pipe that [`Link::splice_to`] moves one direction's bytes
/// through. It is empty between calls.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    pub fn new() -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        Ok(Pipe { read, write })
    }
}

/// At most this much per splice: a pipe holds 64 KiB by default.
const SPLICE_CHUNK: usize = 64 * 1024;
const SPLICE_FLAGS: SpliceFFlags =
    SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

/// Most buffers handed to one writev: Linux's limit. A read of chat is a
/// frame per message, hundreds of them; one writev each 64 made six times
/// the system calls (and the peer's wake-ups) of the reads.
const MAX_IOVECS: usize = 1024;

/// Write every buffer of `bufs` (emptied on success).
async fn write_all_vectored(dst: &mut OwnedWriteHalf, bufs: &mut Vec<Bytes>) -> io::Result<()> {
    bufs.retain(|b| !b.is_empty());
    let mut first = 0;
    while first < bufs.len() {
        let pending = &bufs[first..];
        // The slices are built at each poll: kept across the await they
        // would make every connection's task larger.
        let mut written = std::future::poll_fn(|cx| {
            let slices: Vec<io::IoSlice> = pending
                .iter()
                .take(MAX_IOVECS)
                .map(|b| io::IoSlice::new(b))
                .collect();
            Pin::new(&mut *dst).poll_write_vectored(cx, &slices)
        })
        .await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let head = &mut bufs[first];
            let n = written.min(head.len());
            head.advance(n);
            written -= n;
            if head.is_empty() {
                first += 1;
            }
        }
    }
    bufs.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn batched_writes_deliver_every_byte_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sender = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut receiver, _) = listener.accept().await.unwrap();
        // A small send buffer forces partial writes; more frames than one
        // writev takes.
        socket2::SockRef::from(&sender)
            .set_send_buffer_size(4096)
            .unwrap();
        let frames: Vec<Bytes> = (0..300u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; 1 + (i as usize * 37) % 9000]))
            .collect();
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
        let (_, mut write) = sender.into_split();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            receiver.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut bufs = frames;
        write_all_vectored(&mut write, &mut bufs).await.unwrap();
        assert!(bufs.is_empty());
        write.shutdown().await.unwrap();
        drop(write);
        assert_eq!(reader.await.unwrap(), expected);
    }
}
