//! A non-blocking pipe used as a doorbell: a byte in it means "look again".
//!
//! The watcher thread sleeps on one (registry changes ring it), and every
//! `WakeHub` owns one whose read end an asyncio loop watches.
//!
//! Invariant: both ends are opened non-blocking and close-on-exec, are owned
//! by this struct alone and are closed exactly once, when it is dropped.
//! Neither ringing nor draining ever blocks: a full pipe already says "look".

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub struct Doorbell {
    read: OwnedFd,
    write: OwnedFd,
}

impl Doorbell {
    pub fn new() -> io::Result<Self> {
        let mut fds: [libc::c_int; 2] = [-1, -1];
        open_pipe(&mut fds)?;
        // SAFETY: the pipe call succeeded, so both descriptors are open and
        // nothing else owns them; each `OwnedFd` closes its one on drop.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Doorbell { read, write })
    }

    /// The end to wait on with poll(2) or `loop.add_reader`.
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Write one byte. A full pipe (EAGAIN) is success: the reader has not
    /// looked yet and will see the bytes already there.
    pub fn ring(&self) {
        let byte = 1u8;
        loop {
            // SAFETY: writes one byte from a live local to a descriptor this
            // struct owns.
            let n = unsafe { libc::write(self.write.as_raw_fd(), (&raw const byte).cast(), 1) };
            if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return;
            }
        }
    }

    /// Read until the pipe is empty.
    pub fn drain(&self) {
        let mut buf = [0u8; 256];
        loop {
            // SAFETY: reads at most `buf.len()` bytes into a live local
            // buffer from a descriptor this struct owns.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                continue;
            }
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // 0 cannot happen while we hold the write end; < 0 is EAGAIN.
            return;
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn open_pipe(fds: &mut [libc::c_int; 2]) -> io::Result<()> {
    // SAFETY: `fds` is an array of two ints for pipe2(2) to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Without pipe2(2) the flags are set afterwards; a fork+exec in another
/// thread in between could inherit the descriptors, which only leaks them
/// into that child.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn open_pipe(fds: &mut [libc::c_int; 2]) -> io::Result<()> {
    // SAFETY: `fds` is an array of two ints for pipe(2) to fill.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for &fd in fds.iter() {
        // SAFETY: fcntl(2) on descriptors pipe(2) just opened for us.
        let ok = unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            fl >= 0
                && libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) == 0
                && libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) == 0
        };
        if !ok {
            let err = io::Error::last_os_error();
            // SAFETY: closing the two descriptors we own; not used after.
            unsafe {
                libc::close(fds[0]);
                libc::close(fds[1]);
            }
            return Err(err);
        }
    }
    Ok(())
}

/// Which of the descriptors given to [`wait`] are readable.
#[derive(Default, Debug, Clone, Copy)]
pub struct Ready {
    pub bell: bool,
    pub other: bool,
}

/// Sleep until `bell` or `other` is readable or `timeout` passes (`None`:
/// no timeout). An interrupted sleep returns nothing ready; the caller just
/// loops. Sub-millisecond timeouts are honoured where ppoll(2) exists.
pub fn wait(
    bell: RawFd,
    other: Option<RawFd>,
    timeout: Option<std::time::Duration>,
) -> io::Result<Ready> {
    let mut fds = [
        libc::pollfd {
            fd: bell,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: other.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let n = if other.is_some() { 2 } else { 1 };
    let rc = poll(&mut fds[..n], timeout);
    if rc < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(Ready::default())
        } else {
            Err(err)
        };
    }
    let hit = |p: &libc::pollfd| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
    Ok(Ready {
        bell: hit(&fds[0]),
        other: n == 2 && hit(&fds[1]),
    })
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn poll(fds: &mut [libc::pollfd], timeout: Option<std::time::Duration>) -> libc::c_int {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `fds` is a live slice of pollfd of the length passed, and
    // `ts_ptr` is null or points at a local that outlives the call.
    unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            ts_ptr,
            std::ptr::null(),
        )
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn poll(fds: &mut [libc::pollfd], timeout: Option<std::time::Duration>) -> libc::c_int {
    // poll(2) takes whole milliseconds: round up so a due check is never
    // run early in a busy loop.
    let ms = timeout.map_or(-1, |t| {
        let ms = t.as_micros().div_ceil(1000);
        ms.min(i32::MAX as u128) as libc::c_int
    });
    // SAFETY: `fds` is a live slice of pollfd of the length passed.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) }
}
