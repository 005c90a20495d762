//! The byte channels the protocol runs over: any pair of file descriptors
//! (pipes to `ssh`, stdio), TCP and Unix sockets.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// A duplex byte channel: a read end, a write end, and a name for messages.
///
/// ```no_run
/// use zfs_replicate::remote::Channel;
///
/// let tcp = Channel::tcp(std::net::TcpStream::connect("127.0.0.1:7070")?)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Channel {
    pub(crate) read: OwnedFd,
    pub(crate) write: OwnedFd,
    pub(crate) peer: String,
    pub(crate) shutdown: Option<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("peer", &self.peer).finish()
    }
}

impl Channel {
    /// A channel over two descriptors, such as a child's stdout and stdin.
    /// Reads never block past the peer's dead time; a write to a pipe whose
    /// reader stopped reading blocks until that reader dies (use a socket
    /// where a stalled peer must not hold a writer).
    pub fn from_fds(read: OwnedFd, write: OwnedFd, peer: impl Into<String>) -> Channel {
        Channel {
            read,
            write,
            peer: peer.into(),
            shutdown: None,
        }
    }

    /// This process's stdin and stdout (for `ssh host backup serve --stdio`).
    /// Nothing else may write to stdout while it serves.
    pub fn stdio() -> io::Result<Channel> {
        let read = io::stdin().as_fd().try_clone_to_owned()?;
        let write = io::stdout().as_fd().try_clone_to_owned()?;
        Ok(Channel::from_fds(read, write, "stdio"))
    }

    /// A connected TCP stream (`TCP_NODELAY` is set, and a write that makes
    /// no progress for 20 s fails).
    pub fn tcp(stream: TcpStream) -> io::Result<Channel> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(Duration::from_secs(20)))?;
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "tcp".to_owned(), |a| format!("tcp://{a}"));
        let write = stream.try_clone()?;
        let closer = stream.try_clone()?;
        Ok(Channel {
            read: stream.into(),
            write: write.into(),
            peer,
            shutdown: Some(Box::new(move || {
                let _ = closer.shutdown(Shutdown::Both);
            })),
        })
    }

    /// A connected Unix stream socket.
    pub fn unix(stream: UnixStream) -> io::Result<Channel> {
        stream.set_write_timeout(Some(Duration::from_secs(20)))?;
        let peer = stream
            .peer_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
            .unwrap_or_else(|| "unix".to_owned());
        let write = stream.try_clone()?;
        let closer = stream.try_clone()?;
        Ok(Channel {
            read: stream.into(),
            write: write.into(),
            peer,
            shutdown: Some(Box::new(move || {
                let _ = closer.shutdown(Shutdown::Both);
            })),
        })
    }

    /// Renames the peer in messages ("nas", "ssh backup@nas").
    pub fn named(mut self, peer: impl Into<String>) -> Channel {
        self.peer = peer.into();
        self
    }
}
