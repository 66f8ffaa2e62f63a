//! The event loop's readiness source: one epoll instance, level-triggered,
//! with never-reused `u64` tokens (so an event for a source closed earlier
//! in the same batch cannot reach a newer one).

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// Token of the listening socket.
pub const LISTENER: u64 = 0;
/// Token of the signalfd.
pub const SIGNALS: u64 = 1;

#[derive(Debug)]
pub struct Poller {
    epoll: Epoll,
    next: u64,
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        Ok(Poller {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            next: 16,
        })
    }

    /// Registers `fd` under a fixed token.
    pub fn add_fixed(&self, fd: impl AsFd, token: u64, interest: EpollFlags) -> io::Result<()> {
        self.epoll.add(fd, EpollEvent::new(interest, token))?;
        Ok(())
    }

    /// Registers `fd` under a fresh token, returned.
    pub fn add(&mut self, fd: impl AsFd, interest: EpollFlags) -> io::Result<u64> {
        let token = self.next;
        self.next += 1;
        self.add_fixed(fd, token, interest)?;
        Ok(token)
    }

    pub fn modify(&self, fd: impl AsFd, token: u64, interest: EpollFlags) -> io::Result<()> {
        self.epoll
            .modify(fd, &mut EpollEvent::new(interest, token))?;
        Ok(())
    }

    pub fn remove(&self, fd: impl AsFd) {
        let _ = self.epoll.delete(fd);
    }

    pub fn wait(&self, events: &mut [EpollEvent], timeout: Option<Duration>) -> nix::Result<usize> {
        self.epoll.wait(events, poll_timeout(timeout))
    }
}

/// Milliseconds, rounded up so a deadline is never woken for early.
pub fn poll_timeout(d: Option<Duration>) -> EpollTimeout {
    match d {
        None => EpollTimeout::NONE,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            EpollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(EpollTimeout::MAX)
        }
    }
}
