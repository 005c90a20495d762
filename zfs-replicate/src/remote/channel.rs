//! The byte channels the protocol runs over: any pair of file descriptors
//! (pipes to `ssh`, stdio), TCP and Unix sockets.

use std::io::{self, Read, Write};
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
        let (write, closer) = (stream.try_clone()?, stream.try_clone()?);
        Ok(Channel::socket(
            stream.into(),
            write.into(),
            peer,
            move || {
                let _ = closer.shutdown(Shutdown::Both);
            },
        ))
    }

    /// A connected Unix stream socket.
    pub fn unix(stream: UnixStream) -> io::Result<Channel> {
        stream.set_write_timeout(Some(Duration::from_secs(20)))?;
        let peer = stream
            .peer_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
            .unwrap_or_else(|| "unix".to_owned());
        let (write, closer) = (stream.try_clone()?, stream.try_clone()?);
        Ok(Channel::socket(
            stream.into(),
            write.into(),
            peer,
            move || {
                let _ = closer.shutdown(Shutdown::Both);
            },
        ))
    }

    /// A socket's two halves, and how to shut it down (which wakes a
    /// writer stuck on a peer that stopped reading).
    fn socket(
        read: OwnedFd,
        write: OwnedFd,
        peer: String,
        shutdown: impl Fn() + Send + Sync + 'static,
    ) -> Channel {
        Channel {
            read,
            write,
            peer,
            shutdown: Some(Box::new(shutdown)),
        }
    }

    /// A channel over any reader and writer (an embedder's transport: a
    /// TLS stream's halves, an in-memory pipe). Two threads copy between
    /// them and a socket pair, so the protocol still waits with `poll`; they
    /// end when either side closes. Prefer [`from_fds`](Self::from_fds) and
    /// the socket constructors where there is a descriptor: they copy
    /// nothing.
    pub fn from_io(
        read: impl Read + Send + 'static,
        write: impl Write + Send + 'static,
        peer: impl Into<String>,
    ) -> io::Result<Channel> {
        let (ours, theirs) = UnixStream::pair()?;
        let (inbound, outbound) = (theirs.try_clone()?, theirs);
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.to_owned()).spawn(f)
        };
        let mut read = read;
        spawn(
            "zfs-remote-in",
            Box::new(move || {
                let _ = forward(&mut read, &mut &inbound);
                let _ = inbound.shutdown(Shutdown::Write);
            }),
        )?;
        let mut write = write;
        spawn(
            "zfs-remote-out",
            Box::new(move || {
                let _ = forward(&mut &outbound, &mut write);
                let _ = outbound.shutdown(Shutdown::Read);
            }),
        )?;
        Ok(Channel::unix(ours)?.named(peer))
    }

    /// Renames the peer in messages ("nas", "ssh backup@nas").
    pub fn named(mut self, peer: impl Into<String>) -> Channel {
        self.peer = peer.into();
        self
    }
}

/// Copies `from` into `to` until the end, passing on each piece as it
/// comes. (Not `io::copy`: between a pipe and a socket it splices, and may
/// wait to fill its large request while the peer waits for a reply.)
fn forward(from: &mut impl Read, to: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return to.flush(),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        to.flush()?;
    }
}
