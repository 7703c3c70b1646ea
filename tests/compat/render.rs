//! docs/compatibility.md, rendered from what the servers reported. Only
//! deterministic things go in: the claimed clients (fixed), what the
//! servers wrote about them, versions as major.minor. The LB's address,
//! ports and timings of a run never do; a cell that saw the LB says so in
//! words.

use std::fmt::Write as _;

use super::catalogue::Server;
use super::matrix::{CLAIM4, CLAIM6, Case, Cell, Listener, Mode, Verdict, unreachable};
use super::{Row, Status};

pub const UPDATE_COMMAND: &str = "TTM_UPDATE_COMPAT=1 cargo test --test compat";

/// The Go and Python remedies, cut from the handlers that ran them, so
/// the document shows code this suite executed.
const GO_HANDLER: &str = include_str!("servers/go_net_http.go");
const PYTHON_HANDLER: &str = include_str!("servers/python_http_server.py");

/// The lines strictly between the marker lines `begin` and `end`.
fn between(text: &str, begin: &str, end: &str) -> String {
    let start = text.find(begin).expect("begin marker") + begin.len();
    let stop = text[start..].find(end).expect("end marker") + start;
    let body = &text[start..stop];
    // The rest of the BEGIN line is not part of it.
    let body = body.split_once('\n').map_or("", |(_, b)| b);
    format!("{}\n", body.trim_end())
}

/// `ttmPeer`, as in tests/compat/servers/go_net_http.go.
pub fn go_snippet() -> String {
    between(GO_HANDLER, "// BEGIN ttmPeer", "// END ttmPeer")
}

/// `ttm_peer`, as in tests/compat/servers/python_http_server.py.
pub fn python_snippet() -> String {
    between(PYTHON_HANDLER, "# BEGIN ttm_peer", "# END ttm_peer")
}

fn cell(cells: &[Cell], case: Case, listener: Listener, mode: Mode) -> Option<&Cell> {
    cells
        .iter()
        .find(|c| c.case == case && c.listener == listener && c.mode == mode)
}

/// Markdown-safe one-liner of something a server or the suite said.
fn inline(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    let mut s: String = line.chars().take(160).collect();
    if s.len() < line.len() {
        s.push('…');
    }
    s.replace('|', "\\|").replace('`', "'")
}

fn heading(row: &Row) -> String {
    let name = match &row.status {
        Status::Ran { version, .. } => format!("{} {version}", row.server.name()),
        Status::NotInstalled { .. } => row.server.name().to_owned(),
    };
    match row.server.variant() {
        Some(v) => format!("{name}, {v}"),
        None => name,
    }
}

/// One cell of a server's detailed table.
fn detail(server: Server, c: &Cell) -> String {
    let why = unreachable(server.accept_path(), c.case, c.listener, c.mode);
    match (&c.verdict, why) {
        (Verdict::Real { raw }, _) => format!("✅ `{}`", inline(raw)),
        (Verdict::Lb { getsockopt }, Some(why)) => {
            let mut s = format!("➖ LB address (note {})", why.letter());
            if let Some(g) = getsockopt {
                let _ = write!(s, "; getsockopt 1345: `{}`", inline(g));
            }
            s
        }
        (Verdict::Lb { .. }, None) => "❌ LB address where the client is reachable".into(),
        (Verdict::Wrong { raw }, _) => format!("❌ `{}`", inline(raw)),
        (Verdict::Failed { error }, _) => format!("❌ {}", inline(error)),
    }
}

/// One cell of the summary: the three modes of (case, listener) at once.
fn summary_cell(server: Server, cells: &[Cell], case: Case, listener: Listener) -> String {
    let got: Vec<Option<&Cell>> = Mode::ALL
        .iter()
        .map(|m| cell(cells, case, listener, *m))
        .collect();
    let real = |m: usize| got[m].is_some_and(|c| c.verdict.is_real());
    let lb = |m: usize| got[m].is_some_and(|c| matches!(c.verdict, Verdict::Lb { .. }));
    if real(0) && real(1) && real(2) {
        return "✅".into();
    }
    if (0..3).all(|m| real(m) || lb(m)) {
        let preload: Vec<&str> = [Mode::PreloadKmod, Mode::PreloadBpf]
            .iter()
            .enumerate()
            .filter(|(i, _)| real(i + 1))
            .map(|(_, m)| m.backend().expect("preload modes have a backend"))
            .collect();
        if !real(0) && preload.len() == 2 {
            return "✅ with libttm.so".into();
        }
        if !real(0) && preload.len() == 1 {
            return format!("✅ with libttm.so ({} backend only)", preload[0]);
        }
        if preload.is_empty()
            && let Some(why) = unreachable(server.accept_path(), case, listener, Mode::PreloadKmod)
        {
            return format!("➖ LB address: {}", why.remedy());
        }
    }
    "❌ see docs/compatibility.md".into()
}

/// The summary table alone (what the README carries).
pub fn summary(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str(
        "| server | reports | 4to4, AF_INET | 4to4, dual-stack | 6to4, AF_INET | 6to4, dual-stack |\n",
    );
    s.push_str("|---|---|---|---|---|---|\n");
    for row in rows {
        let _ = write!(s, "| {} | {} |", heading(row), row.server.reports_short());
        match &row.status {
            Status::NotInstalled { .. } => {
                let _ = write!(s, " not installed (`{}`) | | | |", row.server.package());
            }
            Status::Ran { cells, .. } => {
                for case in Case::ALL {
                    for listener in Listener::ALL {
                        let _ = write!(s, " {} |", summary_cell(row.server, cells, case, listener));
                    }
                }
            }
        }
        s.push('\n');
    }
    s
}

/// The whole of docs/compatibility.md.
pub fn document(rows: &[Row]) -> String {
    let mut d = String::new();
    let _ = write!(
        d,
        "# Compatibility: real servers, unmodified\n\
\n\
<!-- Generated by tests/compat.rs from what the servers reported; do not edit.\n     \
Regenerate: {UPDATE_COMMAND} (as root) -->\n\
\n\
Every server here ran unmodified, from its Debian package (Rust std from the\n\
toolchain), in a network namespace behind the LB emulator (`ttmctl simulate`),\n\
and each cell is what the server itself reported about the client: in its\n\
access log, or through a handler of one line that echoes what the runtime's\n\
own API returns. The suite asserts every cell: the real client wherever ttm\n\
can reach the server's view, the LB's address where nothing can (with the\n\
reason and the remedy in the notes).\n\
\n\
* **4to4**: the client is `{CLAIM4}`. **6to4**: the client is `{CLAIM6}`.\n  \
In both the LB reaches the server over IPv4, so without ttm the server sees\n  \
the LB's address.\n\
* **AF_INET**: the server listens on `0.0.0.0`. **dual-stack**: on `::`, an\n  \
AF_INET6 socket that takes IPv4 too (as `::ffff:a.b.c.d`).\n\
* **kernel side**: `ttmctl load` on the server's cgroup, nothing in the\n  \
process. **+ libttm.so**: also `LD_PRELOAD=libttm.so`, with `TTM_BACKEND=kmod`\n  \
(asks getsockopt 1345) or `TTM_BACKEND=bpf` (reads the pinned map).\n\
\n\
## Summary\n\
\n\
✅: the real client with the kernel side alone. ✅ with libttm.so: only\n\
when libttm.so is preloaded. ➖: the LB's address, and what to do instead.\n\
\n"
    );
    d.push_str(&summary(rows));
    d.push_str(
        "\n## Notes\n\
\n\
**A. An IPv6 client on an AF_INET listener, kernel side alone.** An AF_INET\n\
socket's address is a `sockaddr_in`, which cannot hold an IPv6 address, and\n\
the kernel writes it where no eBPF program can widen it. Preload libttm.so\n\
(it returns a `sockaddr_in6` when the caller's buffer has room, 28 bytes or\n\
more), listen on `::` (dual-stack), or read `getsockopt(fd, SOL_IP, 1345)`.\n\
\n\
**B. CPython on an AF_INET listener.** `socket.accept()` passes a buffer\n\
sized for the socket's family, 16 bytes on AF_INET: libttm.so has no room\n\
for an IPv6 address and leaves the LB's. Listen on `::`\n\
(`python3 -m http.server --bind ::`, or `address_family = socket.AF_INET6`\n\
in a `socketserver`), or ask getsockopt 1345 as the vendor's example does.\n\
This is what the handler ran (with `import socket, struct`):\n\
\n\
```python\n",
    );
    d.push_str(&python_snippet());
    d.push_str(
        "```\n\
\n\
**C. Go on an AF_INET listener.** Go calls accept4 and getpeername as raw\n\
system calls, which no preloaded library sees. Listen on `::`:\n\
`net.Listen(\"tcp\", \":8080\")` and `http.ListenAndServe(\":8080\", h)`\n\
already do; only `\"tcp4\"` or an IPv4 address make an AF_INET listener. Or\n\
ask getsockopt 1345 on the connection (keep the `net.Conn` with\n\
`http.Server.ConnContext`). This is what the handler ran:\n\
\n\
```go\n",
    );
    d.push_str(&go_snippet());
    d.push_str(
        "```\n\
\n\
**D. nginx on an AF_INET listener, IPv6 client, with libttm.so.** nginx\n\
closes a connection whose accepted address is wider than its listener's\n\
family, so libttm.so does not widen for nginx unless told to (`TTM_WIDEN`,\n\
see the README) and the LB's address stays. Listen on\n\
`[::]:PORT ipv6only=off`: the kernel side alone then shows IPv6 clients,\n\
and IPv4 ones as `::ffff:a.b.c.d`.\n\
\n\
**TCP_DEFER_ACCEPT: Apache httpd as shipped.** On Linux httpd's default\n\
`AcceptFilter http data` sets TCP_DEFER_ACCEPT on its listeners (as nginx's\n\
`listen ... deferred` and HAProxy's `defer-accept` do), and the kernel then\n\
drops the bare third ACK of the handshake, the one the LB writes the option\n\
into, and creates the connection from the first data segment. ttm's\n\
`ttm_deferred` program reads the option of that ACK on its way to the\n\
listener, and the parser gives it to the connection the data segment\n\
creates: both Apache rows show the client. Loaded with\n\
`ttmctl load --no-defer-accept`, ttm leaves such listeners the LB's\n\
address, unless `AcceptFilter http none` (the second row) turns it off.\n\
\n\
## Per server\n",
    );
    for row in rows {
        let _ = write!(d, "\n### {}\n\n", heading(row));
        match &row.status {
            Status::NotInstalled { missing } => {
                let list: Vec<String> = missing
                    .iter()
                    .map(|p| format!("`{}`", p.display()))
                    .collect();
                let _ = writeln!(
                    d,
                    "Not installed on the machine that generated this file: {} missing \
                     (`{}`). Nothing was observed.",
                    list.join(", "),
                    row.server.package()
                );
            }
            Status::Ran { cells, .. } => {
                let _ = writeln!(
                    d,
                    "From {}. Ran: {}. Reports: {}.",
                    row.server.origin(),
                    row.server.setup(),
                    row.server.reports()
                );
                if let Some(r) = row.server.remark() {
                    let _ = writeln!(d, "\n{r}");
                }
                d.push_str("\n| case | listener |");
                for m in Mode::ALL {
                    let _ = write!(d, " {} |", m.label());
                }
                d.push_str("\n|---|---|---|---|---|\n");
                for case in Case::ALL {
                    for listener in Listener::ALL {
                        let _ = write!(d, "| {} | {} |", case.label(), listener.label());
                        for mode in Mode::ALL {
                            let text = cell(cells, case, listener, mode)
                                .map_or_else(|| "❌ not run".into(), |c| detail(row.server, c));
                            let _ = write!(d, " {text} |");
                        }
                        d.push('\n');
                    }
                }
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(verdict: impl Fn(Case, Listener, Mode) -> Verdict) -> Vec<Cell> {
        let mut v = Vec::new();
        for case in Case::ALL {
            for listener in Listener::ALL {
                for mode in Mode::ALL {
                    v.push(Cell {
                        case,
                        listener,
                        mode,
                        verdict: verdict(case, listener, mode),
                    });
                }
            }
        }
        v
    }

    #[test]
    fn snippets_are_cut_whole_from_the_handlers() {
        let go = go_snippet();
        assert!(go.starts_with("// ttmPeer returns"), "{go}");
        assert!(go.trim_end().ends_with('}'), "{go}");
        assert!(!go.contains("END"), "{go}");
        let py = python_snippet();
        assert!(py.contains("def ttm_peer(sock):"), "{py}");
        assert!(!py.contains("END"), "{py}");
    }

    #[test]
    fn summary_says_which_part_reached_the_client() {
        let lb = || Verdict::Lb { getsockopt: None };
        let real = || Verdict::Real {
            raw: "2001:db8::7 4242".into(),
        };
        let rows = [
            Row {
                server: Server::Nginx,
                status: Status::Ran {
                    version: "1.22".into(),
                    cells: cells(|case, listener, mode| {
                        if case == Case::SixToFour
                            && listener == Listener::Inet
                            && mode == Mode::Kernel
                        {
                            lb()
                        } else {
                            real()
                        }
                    }),
                },
            },
            Row {
                server: Server::Go,
                status: Status::Ran {
                    version: "1.19".into(),
                    cells: cells(|case, listener, _| {
                        if case == Case::SixToFour && listener == Listener::Inet {
                            lb()
                        } else {
                            real()
                        }
                    }),
                },
            },
            Row {
                server: Server::Ruby,
                status: Status::NotInstalled {
                    missing: vec!["/usr/bin/ruby".into()],
                },
            },
        ];
        let s = summary(&rows);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[2],
            "| nginx 1.22 | `$remote_addr` | ✅ | ✅ | ✅ with libttm.so | ✅ |"
        );
        assert_eq!(
            lines[3],
            "| Go net/http 1.19 | `r.RemoteAddr` | ✅ | ✅ | \
             ➖ LB address: listen on `::`, or getsockopt 1345 | ✅ |"
        );
        assert!(lines[4].contains("not installed (`ruby`)"), "{}", lines[4]);
        let doc = document(&rows);
        assert!(doc.contains("➖ LB address (note C)"), "{doc}");
        assert!(doc.contains("Not installed on the machine"), "{doc}");
    }
}
