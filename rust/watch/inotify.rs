//! Kernel file events (Linux inotify) as *hints* that a watched file may
//! have changed. A hint never counts as a change by itself: the watcher
//! thread answers it by checking `PRAGMA data_version`.
//!
//! Watches are put on *directories*, one per directory however many of its
//! files are watched: a database commit touches `X`, `X-wal` or `X-journal`
//! (never `X-shm` through write(2): that one is mmap'ed), and a directory
//! watch sees all of them, including sidecars created after it was added.
//! It also never holds a descriptor on the database file, so it cannot drop
//! the process's POSIX locks on it.
//!
//! Invariant: `dirs` holds exactly the watch descriptors added and not yet
//! removed, each with the files (by name) that keep it alive; a directory's
//! watch is removed when its last file is.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Events that can mean "a commit happened here". IN_MODIFY covers WAL and
/// rollback-journal writes; create/move/delete cover journals appearing and
/// the database file being replaced; close-after-write covers writers that
/// batch their writes. The directory's own removal or move is reported too.
const MASK: u32 = libc::IN_MODIFY
    | libc::IN_CREATE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// Events after which the file at the path may be a different file.
const STRUCTURAL: u32 = libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_MOVED_FROM | libc::IN_DELETE;

/// Suffixes SQLite gives a database's sidecar files.
const SIDECARS: [&str; 3] = ["-wal", "-journal", "-shm"];

/// What the kernel told us, in terms of watched file ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// Something happened to this file or one of its sidecars; `structural`
    /// when the database file itself was created, moved or deleted.
    File { id: u64, structural: bool },
    /// The directory watch of these files is gone (directory removed or
    /// moved): they must be polled from now on.
    Lost(Vec<u64>),
    /// The kernel's event queue overflowed: events were dropped, so every
    /// file may have changed.
    Overflow,
}

struct Dir {
    /// The paths this watch descriptor was added under (usually one; two
    /// when a bind mount shows the same directory twice).
    paths: Vec<PathBuf>,
    /// File name -> ids of the watched files with that name.
    files: HashMap<OsString, Vec<u64>>,
}

pub struct Inotify {
    fd: OwnedFd,
    dirs: HashMap<i32, Dir>,
    by_path: HashMap<PathBuf, i32>,
}

/// Room for many events per read(2); aligned for `inotify_event`.
#[repr(C, align(8))]
struct EventBuf([u8; 16 * 1024]);

impl Inotify {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall, no pointers.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened for us and has no other owner.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Inotify {
            fd,
            dirs: HashMap::new(),
            by_path: HashMap::new(),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Number of directories with a live watch.
    pub fn directories(&self) -> usize {
        self.dirs.len()
    }

    /// Start receiving hints for the file `id` at `path` (canonical).
    pub fn add(&mut self, id: u64, path: &Path) -> io::Result<()> {
        let (dir, name) = split(path)?;
        let wd = match self.by_path.get(dir) {
            Some(&wd) => wd,
            None => {
                let c = CString::new(dir.as_os_str().as_bytes())
                    .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                // SAFETY: `c` is a NUL-terminated path that outlives the call.
                let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK) };
                if wd < 0 {
                    return Err(io::Error::last_os_error());
                }
                self.by_path.insert(dir.to_path_buf(), wd);
                let entry = self.dirs.entry(wd).or_insert_with(|| Dir {
                    paths: Vec::new(),
                    files: HashMap::new(),
                });
                entry.paths.push(dir.to_path_buf());
                wd
            }
        };
        let files = &mut self
            .dirs
            .get_mut(&wd)
            .expect("by_path only names live watches")
            .files;
        files.entry(name.to_os_string()).or_default().push(id);
        Ok(())
    }

    /// Stop hints for file `id`; drops the directory's watch with its last
    /// file. Unknown ids are ignored (the watch may already be lost).
    pub fn remove(&mut self, id: u64, path: &Path) {
        let Ok((dir, name)) = split(path) else {
            return;
        };
        let Some(&wd) = self.by_path.get(dir) else {
            return;
        };
        let Some(entry) = self.dirs.get_mut(&wd) else {
            return;
        };
        if let Some(ids) = entry.files.get_mut(name) {
            ids.retain(|&x| x != id);
            if ids.is_empty() {
                entry.files.remove(name);
            }
        }
        if entry.files.is_empty() {
            self.forget(wd);
            // SAFETY: plain syscall on our descriptor; a watch the kernel
            // already dropped just yields EINVAL, which changes nothing.
            unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
        }
    }

    /// Drop our record of a watch descriptor; returns its files' ids.
    fn forget(&mut self, wd: i32) -> Vec<u64> {
        let Some(dir) = self.dirs.remove(&wd) else {
            return Vec::new();
        };
        for p in &dir.paths {
            self.by_path.remove(p);
        }
        dir.files.into_values().flatten().collect()
    }

    /// Read every pending event and append the hints they carry to `out`.
    pub fn read_hints(&mut self, out: &mut Vec<Hint>) -> io::Result<()> {
        let mut buf = EventBuf([0; 16 * 1024]);
        loop {
            // SAFETY: reads at most the buffer's length into it, from our
            // own descriptor.
            let n =
                unsafe { libc::read(self.fd.as_raw_fd(), buf.0.as_mut_ptr().cast(), buf.0.len()) };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::WouldBlock => return Ok(()),
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(err),
                }
            }
            let mut rest = &buf.0[..n as usize];
            while let Some((event, name, tail)) = next_event(rest) {
                rest = tail;
                self.interpret(&event, name, out);
            }
        }
    }

    fn interpret(&mut self, event: &libc::inotify_event, name: &[u8], out: &mut Vec<Hint>) {
        if event.mask & libc::IN_Q_OVERFLOW != 0 {
            out.push(Hint::Overflow);
            return;
        }
        if event.mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
            // The directory went away or moved: its paths no longer lead to
            // what we watch. Removing a watch we already removed ourselves
            // also reports IN_IGNORED, but then `forget` finds nothing.
            let ids = self.forget(event.wd);
            if !ids.is_empty() {
                // SAFETY: plain syscall on our descriptor (EINVAL if the
                // kernel already dropped the watch).
                unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), event.wd) };
                out.push(Hint::Lost(ids));
            }
            return;
        }
        let Some(dir) = self.dirs.get(&event.wd) else {
            return;
        };
        let name = OsStr::from_bytes(name);
        // The database file itself: its own name.
        if let Some(ids) = dir.files.get(name) {
            let structural = event.mask & STRUCTURAL != 0;
            out.extend(ids.iter().map(|&id| Hint::File { id, structural }));
        }
        // A sidecar: the name minus its suffix.
        let bytes = name.as_bytes();
        for suffix in SIDECARS {
            if let Some(base) = bytes.strip_suffix(suffix.as_bytes()) {
                if let Some(ids) = dir.files.get(OsStr::from_bytes(base)) {
                    out.extend(ids.iter().map(|&id| Hint::File {
                        id,
                        structural: false,
                    }));
                }
            }
        }
    }
}

/// Split one event off the front of `buf`: header, name (without its NUL
/// padding) and the remaining bytes.
fn next_event(buf: &[u8]) -> Option<(libc::inotify_event, &[u8], &[u8])> {
    let header = std::mem::size_of::<libc::inotify_event>();
    if buf.len() < header {
        return None;
    }
    // SAFETY: `buf` holds at least a header's worth of bytes, written by the
    // kernel as an `inotify_event`; read_unaligned makes no alignment claim.
    let event: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
    let end = header.checked_add(event.len as usize)?;
    let name = buf.get(header..end)?;
    let name = match name.iter().position(|&b| b == 0) {
        Some(nul) => &name[..nul],
        None => name,
    };
    Some((event, name, &buf[end..]))
}

fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(io::Error::from(io::ErrorKind::InvalidInput)),
    }
}

/// One raw event as the kernel lays it out, for tests.
#[cfg(test)]
fn raw_event(wd: i32, mask: u32, name: &str) -> Vec<u8> {
    use std::os::unix::ffi::OsStringExt;
    let mut padded = OsString::from(name).into_vec();
    padded.push(0);
    while padded.len() % 8 != 0 {
        padded.push(0);
    }
    let header = libc::inotify_event {
        wd,
        mask,
        cookie: 0,
        len: padded.len() as u32,
    };
    let mut out = vec![0u8; std::mem::size_of::<libc::inotify_event>()];
    // SAFETY: `out` is exactly one header long; write_unaligned needs no
    // alignment.
    unsafe { std::ptr::write_unaligned(out.as_mut_ptr().cast(), header) };
    out.extend(padded);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints_for(ino: &mut Inotify, bytes: &[u8]) -> Vec<Hint> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some((event, name, tail)) = next_event(rest) {
            rest = tail;
            ino.interpret(&event, name, &mut out);
        }
        out
    }

    #[test]
    fn names_and_sidecars_map_to_their_file() {
        let dir = std::env::temp_dir().join(format!("alk-ino-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        let mut ino = Inotify::new().unwrap();
        ino.add(7, &dir.join("a.db")).unwrap();
        ino.add(8, &dir.join("b.db")).unwrap();
        assert_eq!(ino.directories(), 1);
        let wd = ino.by_path[&dir];

        let mut bytes = raw_event(wd, libc::IN_MODIFY, "a.db-wal");
        bytes.extend(raw_event(wd, libc::IN_MOVED_TO, "b.db"));
        bytes.extend(raw_event(wd, libc::IN_MODIFY, "c.db-wal"));
        bytes.extend(raw_event(wd, libc::IN_DELETE, "a.db-journal"));
        assert_eq!(
            hints_for(&mut ino, &bytes),
            vec![
                Hint::File {
                    id: 7,
                    structural: false
                },
                Hint::File {
                    id: 8,
                    structural: true
                },
                Hint::File {
                    id: 7,
                    structural: false
                },
            ]
        );

        ino.remove(7, &dir.join("a.db"));
        assert_eq!(ino.directories(), 1);
        ino.remove(8, &dir.join("b.db"));
        assert_eq!(ino.directories(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn losing_the_directory_reports_its_files() {
        let dir = std::env::temp_dir().join(format!("alk-ino-lost-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        let mut ino = Inotify::new().unwrap();
        ino.add(1, &dir.join("x.db")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let mut out = Vec::new();
        ino.read_hints(&mut out).unwrap();
        assert!(out.contains(&Hint::Lost(vec![1])), "{out:?}");
        assert_eq!(ino.directories(), 0);
    }

    #[test]
    fn overflow_means_everything() {
        let mut ino = Inotify::new().unwrap();
        let bytes = raw_event(-1, libc::IN_Q_OVERFLOW, "");
        assert_eq!(hints_for(&mut ino, &bytes), vec![Hint::Overflow]);
    }
}
