//! One ttmctl at a time per pin directory. `load`, `unload`, `simulate
//! start` and `simulate stop` each stage, rename and remove several pins;
//! two of them interleaved on one directory undo each other (one removes
//! the other's staged pins, or the whole set after a failed first load)
//! and can report success with nothing loaded.
//!
//! The lock is flock(2) on the pin directory itself: bpffs holds no
//! regular files, but any directory fd can carry a flock, and the lock
//! then follows the directory into every mount namespace that shares the
//! bpffs (a DaemonSet and a host shell, each with its own /run). It is
//! released when the process exits, however it exits. A command that
//! removes the directory does so while holding the lock; a waiter that
//! then finds the path naming another directory (or none) starts over.

use anyhow::{Context, Result, bail};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{bpffs, escape};

/// How long a command waits for another one on the same directory: a
/// load takes well under a second, a stuck one is reported.
const WAIT: Duration = Duration::from_secs(60);

/// Held for as long as the command works on the directory.
pub struct PinDirLock {
    dir: File,
}

impl PinDirLock {
    /// For `load` and `simulate start`: the directory, created if needed
    /// (see `bpffs::create_pin_dir`), locked, then checked
    /// (`bpffs::claim_pin_dir`).
    pub fn create(dir: &Path) -> Result<(PathBuf, PinDirLock)> {
        let (dir, lock) = acquire(dir, true)?.context("pin dir vanished")?;
        Ok((dir, lock))
    }

    /// For `unload` and `simulate stop`: the directory locked, or None if
    /// there is none (nothing loaded).
    pub fn existing(dir: &Path) -> Result<Option<PinDirLock>> {
        Ok(acquire(dir, false)?.map(|(_, lock)| lock))
    }

    /// Whether `dir` still names the locked directory. After the holder
    /// removed it, false even if a command waiting to load has already
    /// made the path again (it creates before it locks).
    pub fn still_names(&self, dir: &Path) -> bool {
        still_names(dir, &self.dir)
    }
}

fn acquire(dir: &Path, create: bool) -> Result<Option<(PathBuf, PinDirLock)>> {
    let deadline = Instant::now() + WAIT;
    let mut told = false;
    loop {
        let dir = if create {
            bpffs::create_pin_dir(dir)?
        } else {
            bpffs::require_dir(dir)?;
            dir.to_path_buf()
        };
        let file = match open_dir(&dir) {
            Ok(f) => f,
            // Removed by the command we waited for: none left to unload,
            // or one to create again.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !create => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("opening pin dir {}", escape::path(&dir)));
            }
        };
        if try_lock(&file).with_context(|| format!("locking pin dir {}", escape::path(&dir)))? {
            if still_names(&dir, &file) {
                // Only now: before the lock, an unload could remove the
                // directory under the checks.
                if create {
                    bpffs::claim_pin_dir(&dir)?;
                }
                return Ok(Some((dir, PinDirLock { dir: file })));
            }
            continue;
        }
        let holder = holder(&file);
        if Instant::now() >= deadline {
            bail!(
                "{holder} has been working on {} for over {} s; if it is stuck, stop it and run ttmctl again",
                escape::path(&dir),
                WAIT.as_secs()
            );
        }
        if !told {
            eprintln!(
                "ttm: {holder} is working on {}; waiting for it to finish (up to {} s)",
                escape::path(&dir),
                WAIT.as_secs()
            );
            told = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn open_dir(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
}

/// flock(LOCK_EX | LOCK_NB): Ok(false) when another process holds it.
fn try_lock(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: flock on an fd this function's caller owns for the call.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}

/// Whether `dir` is still the directory `file` has open (not removed, nor
/// removed and made again, while we waited).
fn still_names(dir: &Path, file: &File) -> bool {
    match (fs::metadata(dir), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// "another ttmctl (pid 1234)", from /proc/locks, or "another ttmctl".
fn holder(file: &File) -> String {
    let Ok(meta) = file.metadata() else {
        return "another ttmctl".into();
    };
    let locks = fs::read_to_string("/proc/locks").unwrap_or_default();
    match holder_pid(&locks, meta.dev(), meta.ino()) {
        Some(pid) => {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let comm = escape::value(comm.trim());
            if comm.is_empty() || comm == "ttmctl" {
                format!("another ttmctl (pid {pid})")
            } else {
                format!("another process ({comm}, pid {pid})")
            }
        }
        None => "another ttmctl".into(),
    }
}

/// The pid holding a FLOCK on (dev, ino) in /proc/locks' text, whose
/// lines read `1: FLOCK  ADVISORY  WRITE 1234 00:1d:5678 0 EOF` (device
/// as hex major:minor); waiters' lines carry `->` and are skipped.
fn holder_pid(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let want = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 6 && f[1] == "FLOCK" && f[5] == want)
            .then(|| f[4].parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_holder_and_skips_waiters() {
        let locks = "1: POSIX  ADVISORY  WRITE 77 00:1d:99 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 1234 00:1d:5678 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 4321 00:1d:5678 0 EOF\n";
        let dev = libc::makedev(0, 0x1d);
        assert_eq!(holder_pid(locks, dev, 5678), Some(1234));
        assert_eq!(holder_pid(locks, dev, 99), None);
        assert_eq!(holder_pid(locks, libc::makedev(0, 0x1e), 5678), None);
    }

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_released() {
        let dir = std::env::temp_dir().join(format!("ttm-lock-test-{}", std::process::id()));
        fs::create_dir(&dir).unwrap();
        let a = open_dir(&dir).unwrap();
        let b = open_dir(&dir).unwrap();
        assert!(try_lock(&a).unwrap());
        assert!(!try_lock(&b).unwrap());
        let meta = a.metadata().unwrap();
        let locks = fs::read_to_string("/proc/locks").unwrap();
        assert_eq!(
            holder_pid(&locks, meta.dev(), meta.ino()),
            Some(std::process::id())
        );
        assert!(still_names(&dir, &a));
        drop(a);
        assert!(try_lock(&b).unwrap());
        fs::remove_dir(&dir).unwrap();
        assert!(!still_names(&dir, &b));
    }
}
