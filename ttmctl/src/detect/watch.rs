//! The kernel half of `ttmctl detect`: load `bpf/ttm_detect.bpf.c`,
//! attach it beside whatever runs on the cgroup, feed every event to a
//! tally until a limit or a signal, detach.
//!
//! Nothing is pinned. The links live in this process's fds, so the
//! programs are detached when it exits — by a limit, Ctrl-C, SIGTERM, or
//! a SIGKILL that runs no code of ours at all.

use anyhow::{Context, Result};
use aya::maps::{Map, MapData, PerCpuArray, RingBuf};
use std::fs::File;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::sys::attach;
use crate::{escape, objects, programs};

/// `enum ttm_detect_where`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Where {
    /// The packet that completed a handshake.
    Handshake,
    /// An ACK delivered to a listener.
    ToListener,
}

impl Where {
    pub fn name(self) -> &'static str {
        match self {
            Where::Handshake => "handshake",
            Where::ToListener => "to_listener",
        }
    }
}

/// `struct ttm_detect_event`, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub src: Ipv6Addr,
    pub local_port: u16,
    pub where_: Where,
    /// Option bytes the TCP header declares.
    pub optlen: usize,
    /// Those of them the packet held (fewer: a truncated header).
    pub opts: Vec<u8>,
}

/// sizeof(struct ttm_detect_event); the C layout is checked in the tests.
pub const EVENT_SIZE: usize = 64;
const OPTS_AT: usize = 24;
const OPTS_MAX: usize = 40;

impl Event {
    /// Decodes one ring buffer record; None for one of another size.
    pub fn parse(b: &[u8]) -> Option<Event> {
        if b.len() != EVENT_SIZE {
            return None;
        }
        let src: [u8; 16] = b[0..16].try_into().ok()?;
        let copied = usize::from(b[20]).min(OPTS_MAX);
        Some(Event {
            src: Ipv6Addr::from(src),
            local_port: u16::from_ne_bytes([b[16], b[17]]),
            where_: if b[18] == 0 {
                Where::Handshake
            } else {
                Where::ToListener
            },
            optlen: usize::from(b[19]),
            opts: b[OPTS_AT..OPTS_AT + copied].to_vec(),
        })
    }
}

/// `enum ttm_detect_counter`, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub handshakes: u64,
    pub to_listener: u64,
    pub no_packet: u64,
    pub lost: u64,
}

const COUNTERS: usize = 4;

/// Why the watch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Time,
    Handshakes,
    Signal,
    /// The cgroup was removed (a service restart): nothing more can come.
    CgroupRemoved,
}

impl Stop {
    pub fn name(self) -> &'static str {
        match self {
            Stop::Time => "time",
            Stop::Handshakes => "handshakes",
            Stop::Signal => "signal",
            Stop::CgroupRemoved => "cgroup_removed",
        }
    }
}

pub struct Limits {
    pub time: Duration,
    pub handshakes: u64,
}

pub struct Watched {
    pub counts: Counts,
    pub stop: Stop,
    pub elapsed: Duration,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT, SIGTERM and SIGHUP end the watch (and the report is still
/// printed) instead of the process.
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the
        // handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn sum(arr: &PerCpuArray<&MapData, u64>, i: u32) -> u64 {
    arr.get(&i, 0).map(|v| v.iter().sum()).unwrap_or(0)
}

fn read_counts(map: &Map) -> Result<Counts> {
    let arr: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map)?;
    let v: Vec<u64> = (0..COUNTERS as u32).map(|i| sum(&arr, i)).collect();
    Ok(Counts {
        handshakes: v[0],
        to_listener: v[1],
        no_packet: v[2],
        lost: v[3],
    })
}

fn drain(ring: &mut RingBuf<MapData>, each: &mut impl FnMut(Event)) {
    while let Some(item) = ring.next() {
        if let Some(ev) = Event::parse(&item) {
            each(ev);
        }
    }
}

/// Waits up to `timeout` for the ring buffer to hold something.
fn wait_readable(ring: &RingBuf<MapData>, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd: ring.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the call; a signal just ends it early.
    unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
}

/// Watches `cgroup` until a limit, a signal or its removal, handing each
/// event to `each`.
pub fn watch(cgroup: &Path, limits: &Limits, each: &mut impl FnMut(Event)) -> Result<Watched> {
    let mut ebpf = programs::open(objects::TTM_DETECT, None)?;
    for p in ["ttm_detect_ops", "ttm_detect_ack"] {
        programs::load(&mut ebpf, p)?;
    }
    let mut ring = RingBuf::try_from(
        ebpf.take_map("detect_events")
            .context("map detect_events missing")?,
    )?;
    let file =
        File::open(cgroup).with_context(|| format!("opening cgroup {}", escape::path(cgroup)))?;
    // From here a Ctrl-C ends the watch, not the process.
    catch_signals();
    let links: Vec<OwnedFd> = vec![
        programs::attach(&ebpf, "ttm_detect_ops", &file, attach::CGROUP_SOCK_OPS)?,
        programs::attach(&ebpf, "ttm_detect_ack", &file, attach::CGROUP_INET_INGRESS)?,
    ];
    let counts_map = ebpf
        .map("detect_counts")
        .context("map detect_counts missing")?;
    eprintln!(
        "ttm detect: watching {} for {} s or {} handshakes (Ctrl-C stops early)",
        escape::path(cgroup),
        limits.time.as_secs(),
        limits.handshakes
    );
    let started = Instant::now();
    let stop = loop {
        wait_readable(&ring, Duration::from_millis(100));
        drain(&mut ring, each);
        if STOP.load(Ordering::SeqCst) {
            break Stop::Signal;
        }
        if read_counts(counts_map)?.handshakes >= limits.handshakes {
            break Stop::Handshakes;
        }
        if started.elapsed() >= limits.time {
            break Stop::Time;
        }
        if !cgroup.exists() {
            break Stop::CgroupRemoved;
        }
    };
    let elapsed = started.elapsed();
    // Detached before the last read: what is in the ring now is all
    // there will be, and the counters stop where the events do.
    drop(links);
    drain(&mut ring, each);
    Ok(Watched {
        counts: read_counts(counts_map)?,
        stop,
        elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields of `struct ttm_detect_event` and `enum
    /// ttm_detect_counter` in bpf/ttm_detect.h, in order: what `parse`
    /// and `read_counts` assume.
    #[test]
    fn layouts_match_the_c_header() {
        let header = include_str!("../../../bpf/ttm_detect.h");
        let body = header
            .split("struct ttm_detect_event {")
            .nth(1)
            .and_then(|s| s.split("};").next())
            .expect("struct ttm_detect_event in ttm_detect.h");
        let fields: Vec<&str> = body
            .lines()
            .filter_map(|l| l.split("/*").next())
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(
            fields,
            [
                "__u32 src[4];",
                "__u16 local_port;",
                "__u8 where;",
                "__u8 optlen;",
                "__u8 copied;",
                "__u8 pad[3];",
                "__u8 opts[TTM_DETECT_OPTS];",
            ]
        );
        assert!(header.contains(&format!("#define TTM_DETECT_OPTS {OPTS_MAX}")));
        assert_eq!(OPTS_AT + OPTS_MAX, EVENT_SIZE);
        let order: Vec<usize> = [
            "TTM_DETECT_HANDSHAKE = 0",
            "TTM_DETECT_TO_LISTENER = 1",
            "TTM_DETECT_CNT_HANDSHAKES,",
            "TTM_DETECT_CNT_TO_LISTENER,",
            "TTM_DETECT_CNT_NO_PACKET,",
            "TTM_DETECT_CNT_LOST,",
            "TTM_DETECT_CNT_MAX,",
        ]
        .iter()
        .map(|n| header.find(n).unwrap_or_else(|| panic!("{n} missing")))
        .collect();
        assert!(order.is_sorted(), "ttm_detect.h enums out of order");
        assert_eq!(
            header.matches("\tTTM_DETECT_CNT_").count(),
            COUNTERS + 1,
            "a counter was added: read it in read_counts"
        );
    }

    #[test]
    fn parses_an_event() {
        let mut b = [0u8; EVENT_SIZE];
        b[10] = 0xff;
        b[11] = 0xff;
        b[12..16].copy_from_slice(&[198, 18, 0, 2]);
        b[16..18].copy_from_slice(&8080u16.to_ne_bytes());
        b[18] = 1;
        b[19] = 12;
        b[20] = 10;
        b[24..34].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0]);
        let ev = Event::parse(&b).unwrap();
        assert_eq!(ev.src.to_ipv4_mapped(), Some([198, 18, 0, 2].into()));
        assert_eq!(
            (ev.local_port, ev.where_, ev.optlen, ev.opts.len()),
            (8080, Where::ToListener, 12, 10)
        );
        assert!(Event::parse(&b[..63]).is_none());
    }
}
