//! Handing the listening sockets of a running bellhop to its successor
//! (`bellhop upgrade`), and the successor's word that it serves.
//!
//! ```text
//! old process                                new process (the binary on disk now)
//! Offer::bind: @bellhop-upgrade-PID-N
//! spawn with BELLHOP_UPGRADE=that name ───►  Handover::from_env: connect, the
//! (through launcher.rs)                      peer must be the old process
//! accept: the peer must be the launcher's child
//! Sockets{listeners, admin} + SCM_RIGHTS ─►  adopt them (no bind for those ports)
//!                                            load, bind the rest, start serving
//!                                  ◄──────── Ready{pid} | Failed{reason} | EOF
//! MAINPID=new to systemd, stop accepting
//! Handed ────────────────────────────────►  READY=1 to systemd (now its main PID)
//! drain; exit (the connection closes) ────►  EOF: the old process is gone
//! ```
//!
//! The connection stays open after `Handed` so that the new process learns,
//! by its end, when the old one has drained and exited (its status line says
//! that the old one drains until then).
//!
//! The sockets themselves cross, not copies bound anew: both processes hold
//! the same listening sockets, so a connection waiting in an accept queue is
//! there for whichever process accepts next, and none is lost when the old
//! process closes its descriptors.
//!
//! Why a unix socket and `SCM_RIGHTS` rather than descriptors inherited
//! across `exec`: adopting an inherited descriptor by its number needs
//! `OwnedFd::from_raw_fd`, which is `unsafe` (nothing proves the number is
//! ours), while `recvmsg` hands over `OwnedFd`s the kernel just created
//! (rustix's safe API), so the crate keeps `forbid(unsafe_code)`. The old
//! descriptors also stay close-on-exec, so no other program bellhop might
//! start inherits a listener. The socket is in the abstract namespace (no
//! file to clean up or to protect); `SO_PEERCRED` on both ends makes sure
//! only the process that was started gets the sockets, and only from the
//! process that started it.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixStream};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context as _};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use super::listener::ListenerSpec;

/// The environment variable that tells a new process where to fetch its
/// sockets. Set by the old process for its child only.
pub(super) const ENV: &str = "BELLHOP_UPGRADE";

/// Most descriptors one `SCM_RIGHTS` message may carry (Linux `SCM_MAX_FD`):
/// every worker's socket of every listener, plus the admin listener.
const MAX_FDS: usize = 253;

/// Longest answer line the old process reads from the new one (a `Failed`
/// reason is a rendered config diagnostic: a few KiB).
const MAX_ANSWER: usize = 256 * 1024;

/// What crosses the unix socket, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Message {
    /// Old → new, with the descriptors attached in this order: each group's
    /// sockets, then the admin listener's if `admin`.
    Sockets { listeners: Vec<Group>, admin: bool },
    /// New → old: every listener accepts.
    Ready { pid: u32 },
    /// New → old: it could not start, and why (what it also logs).
    Failed { reason: String },
    /// Old → new, after `Ready`: the old process has stopped accepting and
    /// told systemd the new main PID; the new one may now say `READY=1`.
    Handed,
}

/// The sockets of one configured listener (one per worker of the old process).
#[derive(Debug, Serialize, Deserialize)]
struct Group {
    /// The listener's configured port (0 for an ephemeral one): the key the
    /// new config's listeners are matched by.
    port: u16,
    /// How many descriptors belong to it.
    count: usize,
}

/// The descriptors the old process offers, copied (`dup`) from its own.
#[derive(Debug, Default)]
pub(super) struct Offered {
    /// Per configured port, every worker's socket.
    pub listeners: Vec<(u16, Vec<OwnedFd>)>,
    /// The admin listener, if there is one.
    pub admin: Option<OwnedFd>,
}

/// The old process's side: a unix socket the new process connects to.
#[derive(Debug)]
pub(super) struct Offer {
    listener: tokio::net::UnixListener,
    name: String,
}

/// What the new process said, or that it went away without a word.
#[derive(Debug)]
pub(super) enum Outcome {
    /// It serves.
    Ready,
    /// It gave up, for this reason.
    Failed(String),
    /// It closed the connection without saying either (it crashed or exited).
    Gone,
}

impl Offer {
    /// Listens on a fresh abstract unix socket name.
    pub(super) fn bind() -> io::Result<Offer> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "bellhop-upgrade-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let addr = UnixAddr::from_abstract_name(name.as_bytes())?;
        let listener = std::os::unix::net::UnixListener::bind_addr(&addr)?;
        listener.set_nonblocking(true)?;
        Ok(Offer {
            listener: tokio::net::UnixListener::from_std(listener)?,
            name,
        })
    }

    /// The value of [`ENV`] for the child.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Waits for a process that `ours` accepts (by its pid) to connect, and
    /// returns the connection and that pid; connections from anyone else
    /// are dropped.
    pub(super) async fn accept(&self, ours: impl Fn(u32) -> bool) -> io::Result<(Successor, u32)> {
        loop {
            let (stream, _) = self.listener.accept().await?;
            let peer = rustix::net::sockopt::socket_peercred(&stream)
                .map(|cred| cred.pid.as_raw_nonzero().get().unsigned_abs());
            match peer {
                Ok(pid) if ours(pid) => return Ok((Successor { stream }, pid)),
                Ok(pid) => tracing::warn!(
                    pid,
                    "upgrade: a process other than the new bellhop connected; ignored"
                ),
                Err(e) => tracing::warn!(error = %e, "upgrade: cannot identify a peer; ignored"),
            }
        }
    }
}

/// The old process's connection to the new one, once it has connected.
#[derive(Debug)]
pub(super) struct Successor {
    stream: tokio::net::UnixStream,
}

impl Successor {
    /// Sends `offered` and reads what the new process says back. Once
    /// connected, the connection alone tells how it went: what the new
    /// process wrote before it exited is read before the end of the stream,
    /// so its reason is never lost to the news of its exit.
    pub(super) async fn hand_over(&mut self, offered: Offered) -> anyhow::Result<Outcome> {
        send_sockets(&self.stream, offered).await?;
        let mut line = Vec::new();
        loop {
            let mut byte = [0u8; 1];
            // One byte at a time: nothing after the answer may be consumed
            // here (the stream is kept for `handed`), and the line is short.
            match self.stream.read(&mut byte).await? {
                0 if line.is_empty() => return Ok(Outcome::Gone),
                0 => bail!(
                    "the new process answered {:?} and left",
                    String::from_utf8_lossy(&line)
                ),
                _ if byte[0] == b'\n' => break,
                _ if line.len() >= MAX_ANSWER => {
                    bail!("the new process's answer is over {MAX_ANSWER} bytes")
                }
                _ => line.push(byte[0]),
            }
        }
        match serde_json::from_slice(&line) {
            Ok(Message::Ready { .. }) => Ok(Outcome::Ready),
            Ok(Message::Failed { reason }) => Ok(Outcome::Failed(reason)),
            _ => bail!(
                "the new process answered {:?}",
                String::from_utf8_lossy(&line)
            ),
        }
    }

    /// Tells the new process that the hand-over is complete (this process
    /// no longer accepts and systemd knows the new main PID). The connection
    /// is returned to be kept open until this process exits: its end tells
    /// the new process that the drain is over.
    pub(super) async fn handed(mut self) -> io::Result<tokio::net::UnixStream> {
        let mut line = serde_json::to_vec(&Message::Handed)?;
        line.push(b'\n');
        tokio::io::AsyncWriteExt::write_all(&mut self.stream, &line).await?;
        Ok(self.stream)
    }
}

/// Sends the `Sockets` message with every offered descriptor attached.
async fn send_sockets(stream: &tokio::net::UnixStream, offered: Offered) -> anyhow::Result<()> {
    let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
    let mut listeners = Vec::new();
    for (port, sockets) in &offered.listeners {
        listeners.push(Group {
            port: *port,
            count: sockets.len(),
        });
        fds.extend(sockets.iter().map(AsFd::as_fd));
    }
    fds.extend(offered.admin.as_ref().map(AsFd::as_fd));
    if fds.len() > MAX_FDS {
        bail!(
            "{} listening sockets are more than one message can hand over ({MAX_FDS}); lower `workers`",
            fds.len()
        );
    }
    let message = Message::Sockets {
        listeners,
        admin: offered.admin.is_some(),
    };
    let mut line = serde_json::to_vec(&message)?;
    line.push(b'\n');
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        bail!("cannot attach {} descriptors", fds.len());
    }
    // The descriptors ride with the first byte; a short write (unlikely for
    // a few hundred bytes) is finished without them.
    let sent = loop {
        stream.writable().await?;
        match stream.try_io(tokio::io::Interest::WRITABLE, || {
            rustix::net::sendmsg(
                stream,
                &[IoSlice::new(&line)],
                &mut control,
                SendFlags::NOSIGNAL,
            )
            .map_err(io::Error::from)
        }) {
            Ok(sent) => break sent,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut rest = &line[sent..];
    while !rest.is_empty() {
        stream.writable().await?;
        match stream.try_write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The new process's side: the sockets it was handed and the line back to
/// the old process. Made by [`Handover::from_env`]; a server started with
/// it ([`Server::take_over`](super::Server::take_over)) reports `Ready` once
/// it serves, or `Failed` if it cannot start.
#[derive(Debug)]
pub struct Handover {
    control: UnixStream,
    sockets: Adopted,
}

/// The old process after the hand-over, draining its connections.
#[derive(Debug)]
pub(super) struct Predecessor {
    /// Its process id.
    pub pid: u32,
    stream: tokio::io::BufReader<tokio::net::UnixStream>,
}

impl Predecessor {
    /// Resolves when the old process has exited (its end of the connection
    /// closes with it; it writes nothing more).
    pub(super) async fn exited(mut self) {
        let mut rest = Vec::new();
        let _ = self.stream.read_to_end(&mut rest).await;
    }
}

/// Sockets handed over and not yet taken by a listener of the new config.
#[derive(Debug, Default)]
pub(super) struct Adopted {
    /// Per configured port, the old process's sockets for it.
    listeners: HashMap<u16, Vec<TcpListener>>,
    admin: Option<TcpListener>,
}

impl Handover {
    /// The sockets of the process that started this one for an upgrade, or
    /// `None` when this is an ordinary start (no `BELLHOP_UPGRADE`).
    pub fn from_env() -> anyhow::Result<Option<Handover>> {
        let Some(name) = std::env::var_os(ENV) else {
            return Ok(None);
        };
        let addr = UnixAddr::from_abstract_name(name.as_encoded_bytes())?;
        let control = UnixStream::connect_addr(&addr)
            .context("cannot reach the bellhop that started this upgrade")?;
        let peer = rustix::net::sockopt::socket_peercred(&control)?;
        if peer.pid.as_raw_nonzero().get().unsigned_abs() != predecessor_pid() {
            bail!("the upgrade socket {name:?} is not held by the bellhop that started this one");
        }
        let sockets = receive(&control)?;
        Ok(Some(Handover { control, sockets }))
    }

    /// Tells the old process this one will not serve, and why; it keeps
    /// serving and its `bellhop upgrade` prints `reason`.
    pub fn fail(mut self, reason: &str) {
        self.say(&Message::Failed {
            reason: reason.to_string(),
        });
    }

    /// Tells the old process this one serves, and waits until it has
    /// stopped accepting and passed the main PID to this process (`Handed`):
    /// only then may `READY=1` go to systemd, which takes it from the main
    /// PID alone. Returns the old process, to learn when it has drained;
    /// `None` if it went away before handing over (it is not draining then).
    pub(super) async fn ready(mut self) -> Option<Predecessor> {
        self.say(&Message::Ready {
            pid: std::process::id(),
        });
        let parent = predecessor_pid();
        let stream = self
            .control
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixStream::from_std(self.control));
        let mut stream = match stream {
            Ok(stream) => tokio::io::BufReader::new(stream),
            Err(e) => {
                tracing::warn!(error = %e, "cannot wait for the old bellhop to hand over");
                return None;
            }
        };
        let mut line = String::new();
        match stream.read_line(&mut line).await {
            Ok(n) if n > 0 && matches!(serde_json::from_str(&line), Ok(Message::Handed)) => {
                Some(Predecessor {
                    pid: parent,
                    stream,
                })
            }
            Ok(_) => {
                tracing::warn!(
                    pid = parent,
                    answer = line.trim_end(),
                    "the old bellhop went away before it handed over; serving on"
                );
                None
            }
            Err(e) => {
                tracing::warn!(pid = parent, error = %e, "lost the old bellhop during the hand-over; serving on");
                None
            }
        }
    }

    /// The sockets for the listeners to adopt.
    pub(super) fn sockets(&mut self) -> &mut Adopted {
        &mut self.sockets
    }

    fn say(&mut self, message: &Message) {
        let result = serde_json::to_vec(message)
            .map_err(io::Error::from)
            .and_then(|mut line| {
                line.push(b'\n');
                self.control.write_all(&line)
            });
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot answer the bellhop that started this upgrade");
        }
    }
}

/// The old process: the one the launcher names (launcher.rs), else the
/// parent (an old process that started this one directly).
fn predecessor_pid() -> u32 {
    std::env::var(super::launcher::FROM_ENV)
        .ok()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(std::os::unix::process::parent_id)
}

/// Reads the `Sockets` message and its descriptors.
fn receive(control: &UnixStream) -> anyhow::Result<Adopted> {
    let mut data = vec![0u8; 64 * 1024];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut ancillary = RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(
        control,
        &mut [IoSliceMut::new(&mut data)],
        &mut ancillary,
        RecvFlags::CMSG_CLOEXEC,
    )
    .context("cannot receive the listening sockets")?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in ancillary.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    let line = data.get(..received.bytes).unwrap_or_default();
    let mut reader = BufReader::new(line);
    let mut text = String::new();
    reader.read_line(&mut text)?;
    let Ok(Message::Sockets { listeners, admin }) = serde_json::from_str(&text) else {
        bail!("unexpected handover message {:?}", text.trim_end());
    };
    let expected = listeners.iter().map(|g| g.count).sum::<usize>() + usize::from(admin);
    if fds.len() != expected {
        bail!(
            "expected {expected} sockets from the old process, got {}",
            fds.len()
        );
    }
    let mut fds = fds.into_iter();
    let mut adopted = Adopted::default();
    for group in listeners {
        let sockets = fds
            .by_ref()
            .take(group.count)
            .map(listening_socket)
            .collect::<io::Result<Vec<_>>>()?;
        adopted.listeners.insert(group.port, sockets);
    }
    if admin {
        adopted.admin = fds.next().map(listening_socket).transpose()?;
    }
    Ok(adopted)
}

/// A received descriptor as a non-blocking TCP listener, after checking it is one.
fn listening_socket(fd: OwnedFd) -> io::Result<TcpListener> {
    let socket = socket2::Socket::from(fd);
    if socket.r#type()? != socket2::Type::STREAM || !socket.is_listener()? {
        return Err(io::Error::other(
            "a handed-over descriptor is not a listening TCP socket",
        ));
    }
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

impl Adopted {
    /// The sockets handed over for `spec`'s port (configured ports are the
    /// key, so an ephemeral `0` finds the port the old process was given);
    /// `listener::adopt` sorts them by address.
    pub(super) fn take(&mut self, spec: &ListenerSpec) -> Option<Vec<TcpListener>> {
        self.listeners.remove(&spec.port)
    }

    /// The admin listener handed over, if it listens on `addr`.
    pub(super) fn take_admin(&mut self, addr: SocketAddr) -> Option<TcpListener> {
        let fits = self.admin.as_ref()?.local_addr().ok()? == addr
            || (addr.port() == 0 && self.admin.as_ref()?.local_addr().ok()?.ip() == addr.ip());
        fits.then(|| self.admin.take()).flatten()
    }
}
