//! The servers of the matrix: where each comes from, how it is built (the
//! handlers in Java, Go and Rust, once per run), started unmodified with a
//! config or handler from `tests/compat/servers/`, and read.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::matrix::{AcceptPath, Listener};
use crate::harness::{Launch, PYTHON, run_to_end};

/// `tests/compat/servers/`: configs and one-line handlers.
pub fn servers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/servers")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Server {
    Nginx,
    /// As httpd ships: `AcceptFilter http data`, i.e. TCP_DEFER_ACCEPT
    /// (served through the kernel side's `ttm_deferred`).
    Apache,
    /// With `AcceptFilter http none`: no TCP_DEFER_ACCEPT, as a row of its own.
    ApacheNoDefer,
    Haproxy,
    Node,
    Python,
    Java,
    Ruby,
    Perl,
    Go,
    Rust,
}

/// Where a server's report about a connection comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The response body: the handler echoes what the runtime's API says.
    Body,
    /// A line `<path> <what the server logged>` in this file of the
    /// instance directory (its access log, or its stdout for HAProxy).
    Log(&'static str),
}

/// One server process of the matrix: a listener family and a port, a
/// private directory for its config, pid and logs.
pub struct Instance<'a> {
    pub dir: &'a Path,
    pub port: u16,
    pub listener: Listener,
    /// Where `Server::build` put compiled handlers.
    pub build_dir: &'a Path,
}

impl Server {
    pub const ALL: [Server; 11] = [
        Server::Nginx,
        Server::Apache,
        Server::ApacheNoDefer,
        Server::Haproxy,
        Server::Node,
        Server::Python,
        Server::Java,
        Server::Ruby,
        Server::Perl,
        Server::Go,
        Server::Rust,
    ];

    /// Short name: file names, request paths, messages.
    pub fn key(self) -> &'static str {
        match self {
            Server::Nginx => "nginx",
            Server::Apache => "apache",
            Server::ApacheNoDefer => "apache-nodefer",
            Server::Haproxy => "haproxy",
            Server::Node => "node",
            Server::Python => "python",
            Server::Java => "java",
            Server::Ruby => "ruby",
            Server::Perl => "perl",
            Server::Go => "go",
            Server::Rust => "rust",
        }
    }

    /// Name as the document shows it (the version follows).
    pub fn name(self) -> &'static str {
        match self {
            Server::Nginx => "nginx",
            Server::Apache | Server::ApacheNoDefer => "Apache httpd",
            Server::Haproxy => "HAProxy",
            Server::Node => "Node.js http",
            Server::Python => "Python http.server",
            Server::Java => "Java com.sun.net.httpserver",
            Server::Ruby => "Ruby TCPServer",
            Server::Perl => "Perl IO::Socket::IP",
            Server::Go => "Go net/http",
            Server::Rust => "Rust std TcpListener",
        }
    }

    /// Which configuration of the server, where there are two rows of it
    /// (shown after its version).
    pub fn variant(self) -> Option<&'static str> {
        match self {
            Server::Apache => Some("default `AcceptFilter`"),
            Server::ApacheNoDefer => Some("`AcceptFilter http none`"),
            _ => None,
        }
    }

    /// Name and variant: tells the rows apart in messages.
    pub fn title(self) -> String {
        match self.variant() {
            Some(v) => format!("{}, {v}", self.name()),
            None => self.name().to_owned(),
        }
    }

    /// What installs it: a Debian package (scripts/deps/*.list), or the
    /// Rust toolchain that builds ttm.
    pub fn package(self) -> &'static str {
        match self {
            Server::Nginx => "nginx-light",
            Server::Apache | Server::ApacheNoDefer => "apache2-bin",
            Server::Haproxy => "haproxy",
            Server::Node => "nodejs",
            Server::Python => "python3",
            Server::Java => "default-jdk-headless",
            Server::Ruby => "ruby",
            Server::Perl => "perl",
            Server::Go => "golang-go",
            Server::Rust => "the Rust toolchain",
        }
    }

    /// The Rust toolchain's rustc: the one beside the cargo building us.
    fn rustc() -> PathBuf {
        Path::new(env!("CARGO")).with_file_name("rustc")
    }

    /// Where it came from, for the document (markdown).
    pub fn origin(self) -> String {
        match self {
            Server::Rust => "the Rust toolchain that builds ttm".into(),
            _ => format!("package `{}`", self.package()),
        }
    }

    /// Programs that must exist for the server to run.
    pub fn binaries(self) -> Vec<PathBuf> {
        let p = |s: &str| PathBuf::from(s);
        match self {
            Server::Nginx => vec![p("/usr/sbin/nginx")],
            Server::Apache | Server::ApacheNoDefer => vec![
                p("/usr/sbin/apache2"),
                p("/usr/lib/apache2/modules/mod_mpm_event.so"),
            ],
            Server::Haproxy => vec![p("/usr/sbin/haproxy")],
            Server::Node => vec![p("/usr/bin/node")],
            Server::Python => vec![p(PYTHON)],
            Server::Java => vec![p("/usr/bin/java"), p("/usr/bin/javac")],
            Server::Ruby => vec![p("/usr/bin/ruby")],
            Server::Perl => vec![p("/usr/bin/perl")],
            Server::Go => vec![p("/usr/bin/go")],
            Server::Rust => vec![Server::rustc()],
        }
    }

    /// The missing programs, if any (the server is then "not installed").
    pub fn missing(self) -> Vec<PathBuf> {
        self.binaries()
            .into_iter()
            .filter(|b| !b.exists())
            .collect()
    }

    /// How the runtime asks for the peer (see `AcceptPath`).
    pub fn accept_path(self) -> AcceptPath {
        match self {
            Server::Nginx => AcceptPath::LibcUnwidened,
            Server::Python => AcceptPath::FamilySized,
            Server::Go => AcceptPath::RawSyscalls,
            _ => AcceptPath::Libc,
        }
    }

    pub fn source(self) -> Source {
        match self {
            Server::Nginx | Server::Apache | Server::ApacheNoDefer => Source::Log("access.log"),
            Server::Haproxy => Source::Log("stdout"),
            _ => Source::Body,
        }
    }

    /// What the server reports, in full (markdown).
    pub fn reports(self) -> &'static str {
        match self {
            Server::Nginx => "`$remote_addr $remote_port` in its access log",
            Server::Apache | Server::ApacheNoDefer => "`%h %{remote}p` in its access log",
            Server::Haproxy => "`%ci %cp` in its log",
            Server::Node => "`req.socket.remoteAddress`, `req.socket.remotePort`",
            Server::Python => {
                "the request handler's `client_address` (what `socket.accept()` returned)"
            }
            Server::Java => "`HttpExchange.getRemoteAddress()`",
            Server::Ruby => "`TCPSocket#peeraddr` (as WEBrick and Puma ask)",
            Server::Perl => "`peerhost`, `peerport` of the accepted `IO::Socket::IP`",
            Server::Go => "`r.RemoteAddr` of the `*http.Request`",
            Server::Rust => "the `SocketAddr` from `TcpListener::accept()`",
        }
    }

    /// The same, in a few words for the summary table.
    pub fn reports_short(self) -> &'static str {
        match self {
            Server::Nginx => "`$remote_addr`",
            Server::Apache | Server::ApacheNoDefer => "`%h`",
            Server::Haproxy => "`%ci`",
            Server::Node => "`req.socket.remoteAddress`",
            Server::Python => "`client_address`",
            Server::Java => "`getRemoteAddress()`",
            Server::Ruby => "`peeraddr`",
            Server::Perl => "`peerhost`",
            Server::Go => "`r.RemoteAddr`",
            Server::Rust => "`accept()`",
        }
    }

    /// How it ran (markdown; links are relative to docs/).
    pub fn setup(self) -> &'static str {
        match self {
            Server::Nginx => {
                "`nginx` (master and one worker) with [nginx.conf](../tests/compat/servers/nginx.conf): \
                 `listen 0.0.0.0:PORT` / `listen [::]:PORT ipv6only=off`"
            }
            Server::Apache => {
                "`apache2 -DFOREGROUND`, event MPM, with \
                 [apache2.conf](../tests/compat/servers/apache2.conf): \
                 `Listen 0.0.0.0:PORT` / `Listen [::]:PORT`, no `AcceptFilter` (httpd's \
                 default, `data`: TCP_DEFER_ACCEPT)"
            }
            Server::ApacheNoDefer => "as above, with `AcceptFilter http none` after `Listen`",
            Server::Haproxy => {
                "`haproxy -db` with [haproxy.cfg](../tests/compat/servers/haproxy.cfg): \
                 `bind 0.0.0.0:PORT` / `bind :::PORT v4v6`"
            }
            Server::Node => {
                "`node` [node_http.js](../tests/compat/servers/node_http.js): \
                 `listen(PORT, '0.0.0.0')` / `listen(PORT, '::')`"
            }
            Server::Python => {
                "`python3` [python_http_server.py](../tests/compat/servers/python_http_server.py): \
                 `HTTPServer` on `('0.0.0.0', PORT)` / on `('::', PORT)` with `IPV6_V6ONLY` off, \
                 as `python3 -m http.server --bind ::` does"
            }
            Server::Java => {
                "`java` [CompatHttpServer.java](../tests/compat/servers/CompatHttpServer.java): \
                 `HttpServer.create(new InetSocketAddress(\"0.0.0.0\" / \"::\", PORT))`"
            }
            Server::Ruby => {
                "`ruby` [ruby_tcpserver.rb](../tests/compat/servers/ruby_tcpserver.rb): \
                 `TCPServer.new('0.0.0.0' / '::', PORT)`"
            }
            Server::Perl => {
                "`perl` [perl_io_socket_ip.pl](../tests/compat/servers/perl_io_socket_ip.pl): \
                 `IO::Socket::IP->new(LocalHost => '0.0.0.0' / '::', ...)`"
            }
            Server::Go => {
                "[go_net_http.go](../tests/compat/servers/go_net_http.go) built by `go build`: \
                 `net.Listen(\"tcp4\", \"0.0.0.0:PORT\")` / `net.Listen(\"tcp\", \"[::]:PORT\")`"
            }
            Server::Rust => {
                "[rust_std.rs](../tests/compat/servers/rust_std.rs) built by `rustc`: \
                 `TcpListener::bind((\"0.0.0.0\" / \"::\", PORT))`"
            }
        }
    }

    /// Anything else a reader must know about how the columns were made.
    pub fn remark(self) -> Option<&'static str> {
        match self {
            Server::Java => Some(
                "Java opens AF_INET6 sockets whenever the host has IPv6, for `0.0.0.0` too: \
                 its AF_INET column ran with `-Djava.net.preferIPv4Stack=true`, the only way \
                 to an AF_INET listener. Without it Java behaves as in the dual-stack column.",
            ),
            Server::Python => Some(
                "The handler also reports what `getsockopt(SOL_IP, 1345)` answers on the same \
                 connection, shown where `client_address` cannot be the client (note B).",
            ),
            Server::Go => Some(
                "The handler also reports what `ttmPeer` (note C) answers on the same \
                 connection, shown where `r.RemoteAddr` cannot be the client.",
            ),
            _ => None,
        }
    }

    /// `major.minor` (just `major` where that is how it is known).
    pub fn version(self) -> Result<String, String> {
        let (program, args, parts): (PathBuf, &[&str], usize) = match self {
            Server::Nginx => ("/usr/sbin/nginx".into(), &["-v"], 2),
            Server::Apache | Server::ApacheNoDefer => ("/usr/sbin/apache2".into(), &["-v"], 2),
            Server::Haproxy => ("/usr/sbin/haproxy".into(), &["-v"], 2),
            Server::Node => ("/usr/bin/node".into(), &["--version"], 1),
            Server::Python => (PYTHON.into(), &["--version"], 2),
            Server::Java => ("/usr/bin/java".into(), &["-version"], 1),
            Server::Ruby => ("/usr/bin/ruby".into(), &["--version"], 2),
            Server::Perl => ("/usr/bin/perl".into(), &["-e", "print $^V"], 2),
            Server::Go => ("/usr/bin/go".into(), &["version"], 2),
            Server::Rust => (Server::rustc(), &["--version"], 2),
        };
        let out = run_to_end(Command::new(&program).args(args), Duration::from_secs(30));
        let text = format!("{}\n{}", out.stdout, out.stderr);
        version_in(&text, parts).ok_or_else(|| {
            format!(
                "no version in the output of {} {}: {}",
                program.display(),
                args.join(" "),
                text.trim()
            )
        })
    }

    /// Compiles the handler once per run into `build_dir` (Java, Go, Rust).
    pub fn build(self, build_dir: &Path) -> Result<(), String> {
        let src = servers_dir();
        let mut cmd = match self {
            Server::Java => {
                let mut c = Command::new("/usr/bin/javac");
                c.arg("-d")
                    .arg(build_dir.join("java"))
                    .arg(src.join("CompatHttpServer.java"));
                c
            }
            Server::Go => {
                let mut c = Command::new("/usr/bin/go");
                // Caches in the target dir: independent of $HOME (unset
                // in some CI environments) and kept between runs. Only the
                // standard library is used: nothing to download.
                c.env("GOCACHE", build_dir.join("go-cache"))
                    .env("GOPATH", build_dir.join("go-path"))
                    .env("GOPROXY", "off")
                    .env("GOFLAGS", "")
                    .arg("build")
                    .arg("-o")
                    .arg(build_dir.join("go_net_http"))
                    .arg(src.join("go_net_http.go"));
                c
            }
            Server::Rust => {
                let mut c = Command::new(Server::rustc());
                c.args(["--edition", "2024", "-o"])
                    .arg(build_dir.join("rust_std"))
                    .arg(src.join("rust_std.rs"));
                c
            }
            _ => return Ok(()),
        };
        std::fs::create_dir_all(build_dir)
            .map_err(|e| format!("create {}: {e}", build_dir.display()))?;
        let out = run_to_end(&mut cmd, Duration::from_secs(300));
        if out.status.success() && !out.timed_out {
            Ok(())
        } else {
            Err(format!(
                "building the {} handler failed ({:?}): {}",
                self.name(),
                out.status,
                out.stderr.trim()
            ))
        }
    }

    /// Writes the instance's config (servers that have one).
    pub fn configure(self, inst: &Instance) -> Result<(), String> {
        let (template, listen) = match (self, inst.listener) {
            (Server::Nginx, Listener::Inet) => ("nginx.conf", format!("0.0.0.0:{}", inst.port)),
            (Server::Nginx, Listener::Dual) => {
                ("nginx.conf", format!("[::]:{} ipv6only=off", inst.port))
            }
            (Server::Apache | Server::ApacheNoDefer, Listener::Inet) => {
                ("apache2.conf", format!("0.0.0.0:{}", inst.port))
            }
            (Server::Apache | Server::ApacheNoDefer, Listener::Dual) => {
                ("apache2.conf", format!("[::]:{}", inst.port))
            }
            (Server::Haproxy, Listener::Inet) => ("haproxy.cfg", format!("0.0.0.0:{}", inst.port)),
            (Server::Haproxy, Listener::Dual) => ("haproxy.cfg", format!(":::{} v4v6", inst.port)),
            _ => return Ok(()),
        };
        let text = std::fs::read_to_string(servers_dir().join(template))
            .map_err(|e| format!("read {template}: {e}"))?;
        let dir = inst.dir.to_str().ok_or("instance dir is not UTF-8")?;
        let accept_filter = match self {
            Server::ApacheNoDefer => "AcceptFilter http none",
            _ => "",
        };
        let text = text
            .replace("@DIR@", dir)
            .replace("@LISTEN@", &listen)
            .replace("@ACCEPT_FILTER@", accept_filter);
        let write = |name: &str, text: &str| {
            std::fs::write(inst.dir.join(name), text).map_err(|e| format!("write {name}: {e}"))
        };
        write(template, &text)?;
        if matches!(self, Server::Apache | Server::ApacheNoDefer) {
            // What AliasMatch serves for every request path.
            write("ok.txt", "ok\n")?;
        }
        Ok(())
    }

    /// The unmodified server's command line for `inst`, from `launch`.
    pub fn command(self, launch: &Launch, inst: &Instance) -> Command {
        let host = inst.listener.host();
        let port = inst.port.to_string();
        let src = servers_dir();
        let conf = |name: &str| inst.dir.join(name);
        match self {
            Server::Nginx => {
                let mut c = launch.command("/usr/sbin/nginx");
                c.arg("-p")
                    .arg(inst.dir)
                    .arg("-c")
                    .arg(conf("nginx.conf"))
                    // Before the config is read nginx logs to its built-in
                    // path: point that at the instance too.
                    .arg("-e")
                    .arg(conf("error.log"));
                c
            }
            Server::Apache | Server::ApacheNoDefer => {
                let mut c = launch.command("/usr/sbin/apache2");
                c.arg("-f").arg(conf("apache2.conf")).arg("-DFOREGROUND");
                c
            }
            Server::Haproxy => {
                let mut c = launch.command("/usr/sbin/haproxy");
                c.arg("-f").arg(conf("haproxy.cfg")).arg("-db");
                c
            }
            Server::Node => {
                let mut c = launch.command("/usr/bin/node");
                c.arg(src.join("node_http.js")).args([host, &port]);
                c
            }
            Server::Python => {
                let mut c = launch.command(PYTHON);
                // No __pycache__ in the source tree.
                c.arg("-B")
                    .arg(src.join("python_http_server.py"))
                    .args([host, &port]);
                c
            }
            Server::Java => {
                let mut c = launch.command("/usr/bin/java");
                if inst.listener == Listener::Inet {
                    c.arg("-Djava.net.preferIPv4Stack=true");
                }
                // Start-up speed only: the JIT's first tier and a small heap.
                c.args(["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx64m"])
                    .arg("-cp")
                    .arg(inst.build_dir.join("java"))
                    .args(["CompatHttpServer", host, &port]);
                c
            }
            Server::Ruby => {
                let mut c = launch.command("/usr/bin/ruby");
                c.arg(src.join("ruby_tcpserver.rb")).args([host, &port]);
                c
            }
            Server::Perl => {
                let mut c = launch.command("/usr/bin/perl");
                c.arg(src.join("perl_io_socket_ip.pl")).args([host, &port]);
                c
            }
            Server::Go => {
                let mut c = launch.command(inst.build_dir.join("go_net_http"));
                c.args([host, &port]);
                c
            }
            Server::Rust => {
                let mut c = launch.command(inst.build_dir.join("rust_std"));
                c.args([host, &port]);
                c
            }
        }
    }
}

/// The first `N.N` in `text`, cut to `parts` components (`v20.20.2` -> 20).
fn version_in(text: &str, parts: usize) -> Option<String> {
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        let starts = c.is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit());
        if !starts {
            continue;
        }
        let token: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let nums: Vec<&str> = token.split('.').filter(|s| !s.is_empty()).collect();
        if nums.len() >= 2 {
            return Some(nums[..parts.min(nums.len())].join("."));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::version_in;

    #[test]
    fn versions_are_read_from_what_each_program_prints() {
        let cases = [
            ("nginx version: nginx/1.22.1", 2, "1.22"),
            ("Server version: Apache/2.4.71 (Debian)", 2, "2.4"),
            ("HAProxy version 2.6.12-1+deb12u4 2026/10/17", 2, "2.6"),
            ("v20.20.2", 1, "20"),
            ("openjdk version \"17.0.15\" 2025-04-15", 1, "17"),
            ("ruby 3.1.2p20 (2022-04-12 revision 4491bb740a)", 2, "3.1"),
            ("v5.36.0", 2, "5.36"),
            ("go version go1.19.8 linux/amd64", 2, "1.19"),
            ("rustc 1.95.0 (59807616e 2026-04-14)", 2, "1.95"),
            ("Python 3.11.2", 2, "3.11"),
        ];
        for (text, parts, want) in cases {
            assert_eq!(version_in(text, parts).as_deref(), Some(want), "{text}");
        }
        assert_eq!(version_in("no digits here", 2), None);
    }
}
