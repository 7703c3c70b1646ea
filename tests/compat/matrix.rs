//! The matrix's axes, what a server's report means, and what each cell
//! must show. The expectation is fixed in advance from how each runtime
//! accepts (the field facts in the brief of issue 4), not from what a run
//! observed, so a regression in any part fails the suite.

use std::net::SocketAddr;

/// The client the LB claims, per case (documentation ranges, unreachable).
pub const CLAIM4: &str = "203.0.113.7:4242";
pub const CLAIM6: &str = "[2001:db8::7]:4242";

/// Who the client is; in both cases the LB reaches the server over IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    FourToFour,
    SixToFour,
}

impl Case {
    pub const ALL: [Case; 2] = [Case::FourToFour, Case::SixToFour];

    pub fn label(self) -> &'static str {
        match self {
            Case::FourToFour => "4to4",
            Case::SixToFour => "6to4",
        }
    }

    /// `ttmctl simulate start --client` argument.
    pub fn claim_arg(self) -> &'static str {
        match self {
            Case::FourToFour => CLAIM4,
            Case::SixToFour => CLAIM6,
        }
    }

    pub fn claim(self) -> SocketAddr {
        self.claim_arg()
            .parse()
            .expect("claims are socket addresses")
    }
}

/// The family of the server's listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// AF_INET, bound to 0.0.0.0.
    Inet,
    /// AF_INET6 bound to `::` with IPV6_V6ONLY off: IPv4 arrives v4-mapped.
    Dual,
}

impl Listener {
    pub const ALL: [Listener; 2] = [Listener::Inet, Listener::Dual];

    /// The address handed to the server.
    pub fn host(self) -> &'static str {
        match self {
            Listener::Inet => "0.0.0.0",
            Listener::Dual => "::",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Listener::Inet => "AF_INET",
            Listener::Dual => "dual-stack",
        }
    }

    /// Short, for file and request names.
    pub fn tag(self) -> &'static str {
        match self {
            Listener::Inet => "inet",
            Listener::Dual => "dual",
        }
    }

    /// The /proc/net table a listening socket of this family shows up in.
    pub fn proc_table(self) -> &'static str {
        match self {
            Listener::Inet => "tcp",
            Listener::Dual => "tcp6",
        }
    }
}

/// Which ttm parts run for the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `ttmctl load` on the server's cgroup, nothing in the process.
    Kernel,
    /// Also `LD_PRELOAD=libttm.so TTM_BACKEND=kmod` (getsockopt 1345).
    PreloadKmod,
    /// Also `LD_PRELOAD=libttm.so TTM_BACKEND=bpf` (the pinned map).
    PreloadBpf,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Kernel, Mode::PreloadKmod, Mode::PreloadBpf];

    pub fn label(self) -> &'static str {
        match self {
            Mode::Kernel => "kernel side",
            Mode::PreloadKmod => "+ libttm.so (kmod)",
            Mode::PreloadBpf => "+ libttm.so (bpf)",
        }
    }

    pub fn tag(self) -> &'static str {
        match self {
            Mode::Kernel => "kernel",
            Mode::PreloadKmod => "kmod",
            Mode::PreloadBpf => "bpf",
        }
    }

    /// `TTM_BACKEND` for the preloaded library, None without it.
    pub fn backend(self) -> Option<&'static str> {
        match self {
            Mode::Kernel => None,
            Mode::PreloadKmod => Some("kmod"),
            Mode::PreloadBpf => Some("bpf"),
        }
    }
}

/// How a server accepts, as far as ttm is concerned: whether the option
/// reaches the kernel side at all, and whether a preloaded library can
/// widen an IPv6 client into an AF_INET accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptPath {
    /// accept/accept4/getpeername through libc, with a buffer that has
    /// room for a sockaddr_in6 (>= 28 bytes).
    Libc,
    /// The same, but libttm.so does not widen for this program by default
    /// (`TTM_WIDEN=auto`): nginx drops connections it cannot format.
    LibcUnwidened,
    /// accept through libc, with a buffer sized for the socket's family:
    /// 16 bytes on AF_INET (CPython).
    FamilySized,
    /// Raw system calls, invisible to LD_PRELOAD (Go).
    RawSyscalls,
}

/// Why a cell cannot show the real client (the notes of the document).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Why {
    /// Kernel side alone, IPv6 client, AF_INET listener.
    NoRoomInSockaddrIn,
    /// libttm.so preloaded, but CPython's buffer is sockaddr_in-sized.
    CpythonBuffer,
    /// libttm.so preloaded, but Go makes raw system calls.
    GoRawSyscalls,
    /// libttm.so preloaded, but it does not widen for nginx.
    NginxUnwidened,
}

impl Why {
    /// The note of docs/compatibility.md that explains it.
    pub fn letter(self) -> char {
        match self {
            Why::NoRoomInSockaddrIn => 'A',
            Why::CpythonBuffer => 'B',
            Why::GoRawSyscalls => 'C',
            Why::NginxUnwidened => 'D',
        }
    }

    /// What to do instead, in a few words (the summary table).
    pub fn remedy(self) -> &'static str {
        match self {
            Why::NoRoomInSockaddrIn => "preload libttm.so, or listen on `::`",
            Why::CpythonBuffer | Why::GoRawSyscalls => "listen on `::`, or getsockopt 1345",
            Why::NginxUnwidened => "listen on `[::]:PORT ipv6only=off`",
        }
    }
}

/// None when the real client is reachable in this cell (and must be
/// shown), else why not (and the LB's address must be shown).
pub fn unreachable(path: AcceptPath, case: Case, listener: Listener, mode: Mode) -> Option<Why> {
    if case == Case::FourToFour || listener == Listener::Dual {
        // The kernel side rewrites in-kernel wherever the family can hold
        // the client.
        return None;
    }
    match (mode, path) {
        (Mode::Kernel, _) => Some(Why::NoRoomInSockaddrIn),
        (_, AcceptPath::Libc) => None,
        (_, AcceptPath::LibcUnwidened) => Some(Why::NginxUnwidened),
        (_, AcceptPath::FamilySized) => Some(Why::CpythonBuffer),
        (_, AcceptPath::RawSyscalls) => Some(Why::GoRawSyscalls),
    }
}

/// What a server said about one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// As the server wrote it (its log line or its handler's first line,
    /// without the request path).
    pub raw: String,
    /// The handler's `getsockopt(SOL_IP, 1345)` answer, where it has one.
    pub getsockopt: Option<String>,
}

/// An address as servers write it: `ip port`, `ip:port` or `[ip]:port`,
/// with the IP made canonical (`::ffff:a.b.c.d` becomes `a.b.c.d`).
pub fn parse_addr(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    let addr = match text.split_whitespace().collect::<Vec<_>>()[..] {
        [ip, port] => SocketAddr::new(ip.parse().ok()?, port.parse().ok()?),
        [one] => one.parse().ok()?,
        _ => return None,
    };
    Some(SocketAddr::new(addr.ip().to_canonical(), addr.port()))
}

/// What one cell showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The real client, as the server wrote it.
    Real { raw: String },
    /// The LB's address and the connection's own port: ttm did not reach
    /// the server's view. `getsockopt` is the handler's 1345 answer.
    Lb { getsockopt: Option<String> },
    /// Something else: a wrong address, or a report that does not parse.
    Wrong { raw: String },
    /// No report: the server did not start, answer or log.
    Failed { error: String },
}

impl Verdict {
    /// Judges `report` for a connection the LB made from `lb` (its own
    /// address and source port) claiming `claim`.
    pub fn judge(report: Result<Report, String>, claim: SocketAddr, lb: SocketAddr) -> Verdict {
        let report = match report {
            Ok(r) => r,
            Err(error) => return Verdict::Failed { error },
        };
        let claim = SocketAddr::new(claim.ip().to_canonical(), claim.port());
        match parse_addr(&report.raw) {
            Some(a) if a == claim => Verdict::Real { raw: report.raw },
            Some(a) if a == lb => Verdict::Lb {
                getsockopt: report.getsockopt,
            },
            _ => Verdict::Wrong { raw: report.raw },
        }
    }

    pub fn is_real(&self) -> bool {
        matches!(self, Verdict::Real { .. })
    }
}

/// One cell of a server's matrix.
#[derive(Clone, Debug)]
pub struct Cell {
    pub case: Case,
    pub listener: Listener,
    pub mode: Mode,
    pub verdict: Verdict,
}

/// Whether a cell shows what it must; Err says what is wrong.
pub fn check(path: AcceptPath, cell: &Cell) -> Result<(), String> {
    let why = unreachable(path, cell.case, cell.listener, cell.mode);
    match (&cell.verdict, why) {
        (Verdict::Real { .. }, None) => Ok(()),
        (Verdict::Lb { getsockopt }, Some(_)) => match getsockopt {
            // The remedy the document gives must work.
            Some(g) if parse_addr(g) != Some(cell.case.claim()) => Err(format!(
                "getsockopt 1345 answered {g:?}, not {}",
                cell.case.claim()
            )),
            _ => Ok(()),
        },
        (Verdict::Real { raw }, Some(why)) => Err(format!(
            "showed the real client ({raw}) where it cannot ({why:?}): \
             the expectation or the reasoning behind it is out of date"
        )),
        (Verdict::Lb { .. }, None) => Err("showed the LB's address, not the real client".into()),
        (Verdict::Wrong { raw }, _) => Err(format!("showed neither client nor LB: {raw:?}")),
        (Verdict::Failed { error }, _) => Err(error.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_in_every_way_servers_write_them() {
        let v4: SocketAddr = CLAIM4.parse().unwrap();
        let v6: SocketAddr = CLAIM6.parse().unwrap();
        assert_eq!(parse_addr("203.0.113.7 4242"), Some(v4));
        assert_eq!(parse_addr("::ffff:203.0.113.7 4242"), Some(v4));
        assert_eq!(parse_addr("203.0.113.7:4242\n"), Some(v4));
        assert_eq!(parse_addr("[2001:db8::7]:4242"), Some(v6));
        assert_eq!(parse_addr("2001:db8:0:0:0:0:0:7 4242"), Some(v6));
        assert_eq!(parse_addr("2001:db8::7"), None);
        assert_eq!(parse_addr(""), None);
    }
}
