//! Connections that have not sent a byte yet, held for the least memory
//! each: the socket, a few words of bookkeeping, and one registration in an
//! epoll set of the accept loop's own.
//!
//! Why not a task per connection from accept on: a tokio task and the
//! reactor's per-socket `ScheduledIo` cost about 1.2 KiB together (both
//! 128-byte aligned, plus what malloc loses to that alignment), which is what
//! a flood of connections that never speak pins, against nginx's 0.5–0.7 KiB.
//! Here such a connection is a [`Seat`] of under 128 bytes in one vector,
//! and the kernel watches all of them through one epoll file that is itself
//! registered with the worker's runtime. A connection leaves the room when
//! its first bytes (or its FIN, or an error) arrive: only then is it
//! registered with tokio and given a task, with the deadline its wait counts
//! against (the TLS handshake timeout, or `client-header-timeout` for the
//! first request head), so waiting never adds to it.
//!
//! Seats form a list in arrival order, so the one whose deadline comes first
//! is always the oldest: one timer serves the whole room, and a connection
//! that leaves early is unlinked in O(1) without leaving anything behind.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;

use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

use rustix::event::epoll;
use rustix::event::Timespec;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

use crate::limit::ConnPermit;

/// A connection waiting for its first byte.
#[derive(Debug)]
pub(super) struct Guest {
    /// The accepted socket (non-blocking, not registered with tokio).
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// Its place under the connection caps, held while it waits.
    pub permit: ConnPermit,
    /// When it was accepted: its deadlines count from here.
    pub arrived: Instant,
}

/// "No seat" in the arrival-order links and the free list.
const NONE: u32 = u32::MAX;
/// At most this many readiness events are taken from the kernel at once.
const EVENTS_PER_WAIT: usize = 64;
/// A room this large that emptied gives its memory back (a flood left).
const SHRINK_ABOVE: usize = 1024;

/// One place in the room. Vacant seats are chained through `next` into the
/// free list; occupied ones into the arrival-order list through both links.
#[derive(Debug)]
struct Seat {
    guest: Option<Guest>,
    /// Bumped whenever the seat is taken, so an epoll event names the guest
    /// it was registered for and never a later occupant of the seat.
    generation: u32,
    prev: u32,
    next: u32,
}

/// The waiting room of one accept loop.
#[derive(Debug)]
pub(super) struct WaitingRoom {
    /// One-shot registrations of every guest's socket, readable when any of
    /// them is.
    epoll: AsyncFd<OwnedFd>,
    seats: Vec<Seat>,
    /// Head of the free list of vacant seats.
    free: u32,
    /// Ends of the arrival-order list.
    oldest: u32,
    newest: u32,
    /// What the last `epoll_wait` returned: each event's seat and generation
    /// (kept as numbers: rustix's event type is not `Send`).
    events: Vec<u64>,
}

impl WaitingRoom {
    /// An empty room, its epoll set registered with the current runtime.
    pub(super) fn new() -> io::Result<Self> {
        let fd = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        Ok(WaitingRoom {
            epoll: watch(fd)?,
            seats: Vec::new(),
            free: NONE,
            oldest: NONE,
            newest: NONE,
            events: Vec::with_capacity(EVENTS_PER_WAIT),
        })
    }

    /// How many connections wait.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.seats.iter().filter(|s| s.guest.is_some()).count()
    }

    /// When the longest-waiting guest arrived.
    pub(super) fn oldest_arrival(&self) -> Option<Instant> {
        self.guest_at(self.oldest).map(|g| g.arrived)
    }

    /// Seats `guest` until its first byte arrives. When the kernel refuses
    /// the registration (out of memory, or the epoll watch limit), the guest
    /// is handed back to be served at once instead.
    pub(super) fn seat(&mut self, guest: Guest) -> Result<(), Guest> {
        let index = match self.free {
            NONE => match u32::try_from(self.seats.len()) {
                Ok(index) if index != NONE => {
                    self.seats.push(Seat {
                        guest: None,
                        generation: 0,
                        prev: NONE,
                        next: NONE,
                    });
                    index
                }
                _ => return Err(guest),
            },
            index => index,
        };
        let seat = &mut self.seats[index as usize];
        let generation = seat.generation.wrapping_add(1);
        // ONESHOT: after its first event the socket reports nothing more
        // here, so it can go on to tokio's reactor without being removed from
        // this set first; closing it removes it.
        let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP | epoll::EventFlags::ONESHOT;
        let data = epoll::EventData::new_u64(u64::from(generation) << 32 | u64::from(index));
        if let Err(e) = epoll::add(self.epoll.get_ref(), &guest.stream, data, flags) {
            tracing::debug!(error = %e, "cannot watch a new connection; serving it at once");
            return Err(guest);
        }
        if self.free == index {
            self.free = seat.next;
        }
        seat.generation = generation;
        seat.guest = Some(guest);
        seat.prev = self.newest;
        seat.next = NONE;
        match self.newest {
            NONE => self.oldest = index,
            newest => self.seats[newest as usize].next = index,
        }
        self.newest = index;
        Ok(())
    }

    /// Waits until at least one guest's first bytes (or its end) arrived,
    /// and moves every such guest to `out`. Cancel-safe: it only waits at
    /// the readiness of the epoll set, before taking anything.
    pub(super) async fn arrivals(&mut self, out: &mut Vec<Guest>) -> io::Result<()> {
        loop {
            let mut ready = self.epoll.readable().await?;
            let events = &mut self.events;
            events.clear();
            let taken = ready.try_io(|epoll| {
                let zero = Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                let mut buffer = [MaybeUninit::<epoll::Event>::uninit(); EVENTS_PER_WAIT];
                let (ready, _) = epoll::wait(epoll.get_ref(), &mut buffer[..], Some(&zero))?;
                if ready.is_empty() {
                    // Readiness was stale: clear it and wait again.
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                events.extend(ready.iter().map(|e| e.data.u64()));
                Ok(())
            });
            match taken {
                Ok(Ok(())) => break,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        for i in 0..self.events.len() {
            let data = self.events[i];
            let (generation, index) = ((data >> 32) as u32, data as u32);
            let current = self
                .seats
                .get(index as usize)
                .is_some_and(|s| s.generation == generation && s.guest.is_some());
            if current {
                out.extend(self.leave(index));
            }
        }
        Ok(())
    }

    /// Moves every guest that arrived at or before `cutoff` (whose deadline
    /// has passed) to `out`, oldest first.
    pub(super) fn expired(&mut self, cutoff: Instant, out: &mut Vec<Guest>) {
        while self
            .oldest_arrival()
            .is_some_and(|arrived| arrived <= cutoff)
        {
            out.extend(self.leave(self.oldest));
        }
    }

    /// Empties the room (the listener stops): the guests' sockets close.
    pub(super) fn clear(&mut self) {
        while self.oldest != NONE {
            drop(self.leave(self.oldest));
        }
    }

    fn guest_at(&self, index: u32) -> Option<&Guest> {
        self.seats.get(index as usize)?.guest.as_ref()
    }

    /// Unlinks the guest in seat `index` and frees the seat.
    fn leave(&mut self, index: u32) -> Option<Guest> {
        let seat = self.seats.get_mut(index as usize)?;
        let guest = seat.guest.take()?;
        let (prev, next) = (seat.prev, seat.next);
        seat.prev = NONE;
        seat.next = self.free;
        self.free = index;
        match prev {
            NONE => self.oldest = next,
            prev => self.seats[prev as usize].next = next,
        }
        match next {
            NONE => self.newest = prev,
            next => self.seats[next as usize].prev = prev,
        }
        if self.oldest == NONE && self.seats.len() > SHRINK_ABOVE {
            self.seats = Vec::new();
            self.free = NONE;
        }
        Some(guest)
    }
}

/// A descriptor this module registers with the worker's reactor: types
/// that own their descriptor, which so stays open and the same for as long
/// as the `AsyncFd` lives.
pub(super) trait OwnsItsFd: AsRawFd {}
impl OwnsItsFd for OwnedFd {}
impl OwnsItsFd for std::net::TcpListener {}

/// Registers `inner` with the current runtime's reactor, for readability.
#[allow(unsafe_code)]
pub(super) fn watch<T: OwnsItsFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `AsyncFd` needs the descriptor to stay open and unchanged
    // while it lives; `OwnsItsFd` types own it and close it only when
    // dropped, which the `AsyncFd` (their owner now) does last.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }.map_err(|e| e.into())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use super::*;
    use crate::limit::{ConnCaps, RefusedCounters};

    /// What one silent connection costs here is its seat (the vector may be
    /// up to twice as long as the room is full).
    #[test]
    fn a_seat_is_small() {
        let size = std::mem::size_of::<Seat>();
        assert!(size <= 128, "a seat is {size} bytes");
    }

    /// `n` accepted connections from clients that stay connected, as guests.
    fn guests(n: usize) -> (Vec<TcpStream>, Vec<Guest>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let caps = ConnCaps::new(1000, 1000, RefusedCounters::default());
        let mut clients = Vec::new();
        let mut guests = Vec::new();
        for _ in 0..n {
            clients.push(TcpStream::connect(addr).unwrap());
            let (stream, peer) = listener.accept().unwrap();
            stream.set_nonblocking(true).unwrap();
            guests.push(Guest {
                stream,
                peer,
                permit: caps.admit(peer.ip()).unwrap(),
                arrived: Instant::now(),
            });
        }
        (clients, guests)
    }

    fn peer_ports(guests: &[Guest]) -> Vec<u16> {
        guests.iter().map(|g| g.peer.port()).collect()
    }

    #[tokio::test]
    async fn guests_leave_when_they_speak_and_the_oldest_expire_first() {
        let mut room = WaitingRoom::new().unwrap();
        let (mut clients, seated) = guests(4);
        let ports = peer_ports(&seated);
        for guest in seated {
            room.seat(guest).unwrap();
        }
        assert_eq!(room.len(), 4);

        // The third speaks; the second hangs up: both leave, in any order.
        clients[2].write_all(b"G").unwrap();
        drop(clients.remove(1));
        let mut out = Vec::new();
        while out.len() < 2 {
            tokio::time::timeout(Duration::from_secs(10), room.arrivals(&mut out))
                .await
                .expect("arrivals within 10 s")
                .unwrap();
        }
        let mut left = peer_ports(&out);
        left.sort_unstable();
        let mut expected = vec![ports[1], ports[2]];
        expected.sort_unstable();
        assert_eq!(left, expected);
        assert_eq!(room.len(), 2);

        // A new guest takes a freed seat; expiry still goes by arrival.
        let (_late_client, late) = guests(1);
        let late_port = late[0].peer.port();
        let mut late = late.into_iter();
        room.seat(late.next().unwrap()).unwrap();
        let mut expired = Vec::new();
        room.expired(Instant::now() - Duration::from_secs(3600), &mut expired);
        assert!(expired.is_empty());
        let cutoff = room.oldest_arrival().unwrap();
        room.expired(cutoff, &mut expired);
        assert_eq!(peer_ports(&expired), vec![ports[0]]);
        room.expired(Instant::now(), &mut expired);
        assert_eq!(peer_ports(&expired), vec![ports[0], ports[3], late_port]);
        assert_eq!(room.len(), 0);
        assert!(room.oldest_arrival().is_none());
    }

    /// Guests still waiting when the listener stops are closed: their
    /// clients read the end of the stream.
    #[tokio::test]
    async fn clearing_the_room_closes_every_guest() {
        let mut room = WaitingRoom::new().unwrap();
        let (clients, seated) = guests(3);
        for guest in seated {
            room.seat(guest).unwrap();
        }
        room.clear();
        assert_eq!(room.len(), 0);
        for mut client in clients {
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut byte = [0u8; 1];
            assert_eq!(client.read(&mut byte).unwrap(), 0, "EOF");
        }
    }
}
