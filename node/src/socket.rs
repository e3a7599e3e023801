//! A client socket with one fewer system call per request than a plain async stream.
//!
//! An async read that returns data leaves the socket marked readable, so the next read is a
//! system call that fails with EAGAIN before the task can sleep: for a client sending one
//! request at a time, a third of the server's system calls. Here a read that returns fewer
//! bytes than it asked for marks the socket not readable at once. That is safe for TCP with
//! tokio's edge-triggered epoll: a short read drained the receive queue, later data raises a
//! new readiness event, and tokio ignores a clear that is older than the latest event.

use std::io::{self, Write};
use std::net::TcpStream as StdTcpStream;
use std::os::fd::AsRawFd;

use bytes::BytesMut;
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;

/// A connected, non-blocking client socket.
pub struct Socket {
    fd: AsyncFd<StdTcpStream>,
}

impl Socket {
    /// Takes over a tokio stream (it stays non-blocking).
    pub fn new(stream: TcpStream) -> io::Result<Socket> {
        let stream = stream.into_std()?;
        // SAFETY: the std stream owns its file descriptor, which stays open and the same until
        // the AsyncFd (and the stream inside it) is dropped.
        let fd = unsafe { AsyncFd::register(stream) }.map_err(|e| e.into_parts().1)?;
        Ok(Socket { fd })
    }

    /// Reads what is available into `buf`'s spare capacity; 0 means the peer closed.
    /// Cancel-safe: nothing is consumed until the read completes.
    pub async fn read(&self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            let spare = buf.spare_capacity_mut();
            let wanted = spare.len();
            // SAFETY: read(2) writes at most `wanted` bytes into the spare capacity, which we
            // then mark initialised by exactly the count it reports.
            let n = unsafe {
                libc::read(
                    self.fd.get_ref().as_raw_fd(),
                    spare.as_mut_ptr().cast(),
                    wanted,
                )
            };
            if n >= 0 {
                let n = n as usize;
                unsafe { buf.set_len(buf.len() + n) };
                if n < wanted && n > 0 {
                    guard.clear_ready();
                }
                return Ok(n);
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock => guard.clear_ready(),
                io::ErrorKind::Interrupted => {}
                _ => return Err(error),
            }
        }
    }

    /// Writes all of `data`.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|inner| inner.get_ref().write(data)) {
                Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }
}
