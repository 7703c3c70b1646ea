//! include/ttm.h and the ways to use it: the header compiles as C99, C11
//! and C++ with -Wall -Wextra -pedantic; a program links with -lttm through
//! packaging/ttm.pc.in; the C and Python examples build and show the real
//! client under the shim (fake kernel module, loopback).

mod harness;
mod preload;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use preload::{PYTHON, Scratch, fake_kmod, libttm};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn header_compiles_pedantically_in_c_and_cpp() {
    let scratch = Scratch::new("header");
    let src = r#"#include <ttm.h>
#include <stddef.h>
int check(int fd);
int check(int fd)
{
    struct ttm_peer p;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    p.af = AF_INET;
    p.ip = 0;
    (void)p.in6;
    (void)p.all[3];
    (void)p.ip6[0];
    (void)p.in;
    (void)p.port;
    typedef char size_is_20[sizeof(struct ttm_peer) == 20 ? 1 : -1];
    (void)sizeof(size_is_20);
    return ttm_get_peer(fd, (struct sockaddr *)&ss, &len) + ttm_get_peer_raw(fd, &p) +
           (ttm_backend() != NULL) + (ttm_version() != NULL) + ttm_stat(0, NULL, NULL) +
           TTM_SO_GET_PEER;
}
"#;
    for (compiler, std, ext) in [
        ("gcc", "-std=c99", "c"),
        ("gcc", "-std=c11", "c"),
        ("gcc", "-std=gnu99", "c"),
        ("g++", "-std=c++11", "cc"),
        ("g++", "-std=c++17", "cc"),
        ("clang", "-std=c99", "c"),
    ] {
        if compiler == "clang" && Command::new("clang").arg("--version").output().is_err() {
            continue;
        }
        let file = scratch.0.join(format!("t{std}.{ext}"));
        std::fs::write(&file, src).unwrap();
        let out = Command::new(compiler)
            .args([
                std,
                "-Wall",
                "-Wextra",
                "-pedantic",
                "-Werror",
                "-c",
                "-o",
                "/dev/null",
            ])
            .arg("-I")
            .arg(root().join("include"))
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{compiler} {std}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A prefix laid out as a package would install it, with ttm.pc rendered
/// from packaging/ttm.pc.in.
fn install(scratch: &Path) -> PathBuf {
    let prefix = scratch.join("usr");
    let lib = prefix.join("lib");
    let inc = prefix.join("include");
    std::fs::create_dir_all(lib.join("pkgconfig")).unwrap();
    std::fs::create_dir_all(&inc).unwrap();
    std::fs::copy(libttm(), lib.join("libttm.so.1")).unwrap();
    std::os::unix::fs::symlink("libttm.so.1", lib.join("libttm.so")).unwrap();
    std::fs::copy(root().join("include/ttm.h"), inc.join("ttm.h")).unwrap();
    let pc = std::fs::read_to_string(root().join("packaging/ttm.pc.in"))
        .unwrap()
        .replace("@PREFIX@", prefix.to_str().unwrap())
        .replace("@LIBDIR@", "${prefix}/lib")
        .replace("@INCLUDEDIR@", "${prefix}/include")
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"));
    std::fs::write(lib.join("pkgconfig/ttm.pc"), pc).unwrap();
    prefix
}

#[test]
fn links_with_pkg_config_and_lttm() {
    let scratch = Scratch::new("pkgconfig");
    let prefix = install(&scratch.0);
    let pkg_config = |what: &str| {
        let pc = Command::new("pkg-config")
            .args([what, "ttm"])
            .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
            .output()
            .expect("pkg-config (scripts/deps.sh installs it)");
        assert!(
            pc.status.success(),
            "{}",
            String::from_utf8_lossy(&pc.stderr)
        );
        String::from_utf8(pc.stdout).unwrap()
    };
    assert_eq!(pkg_config("--modversion").trim(), env!("CARGO_PKG_VERSION"));
    let flags = format!("{} {}", pkg_config("--cflags"), pkg_config("--libs"));
    assert!(flags.contains("-lttm"), "{flags}");
    let flags: Vec<&str> = flags.split_whitespace().collect();
    let src = scratch.0.join("main.c");
    std::fs::write(
        &src,
        "#include <ttm.h>\n#include <stdio.h>\n#include <errno.h>\n\
         int main(void) { struct ttm_peer p; int r = ttm_get_peer_raw(0, &p);\n\
         printf(\"%s %s %d %d\\n\", ttm_version(), ttm_backend(), r, errno); return 0; }\n",
    )
    .unwrap();
    let exe = scratch.0.join("main");
    preload::gcc(&exe, &flags, &[&src]);
    let needed = Command::new("readelf")
        .arg("-d")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&needed.stdout).contains("Shared library: [libttm.so.1]"),
        "linked against the SONAME"
    );
    let out = Command::new(&exe)
        .env("LD_LIBRARY_PATH", prefix.join("lib"))
        .env("TTM_BPF_MAP", preload::NO_MAP)
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{} none -1 38\n", env!("CARGO_PKG_VERSION"))
    );
}

/// A server process whose stdout is read line by line.
struct Server {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Server {
    fn start(cmd: &mut Command) -> Server {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Server { child, lines }
    }

    fn line(&mut self) -> String {
        match self.lines.next() {
            Some(Ok(l)) => l,
            other => {
                let _ = self.child.kill();
                let mut err = String::new();
                let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("server ended ({other:?}); stderr:\n{err}")
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn shim_env(cmd: &mut Command, client: &str) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TTM_") {
            cmd.env_remove(k);
        }
    }
    cmd.env(
        "LD_PRELOAD",
        format!("{}:{}", libttm().display(), fake_kmod().display()),
    )
    .env("TTM_BACKEND", "kmod")
    .env("TTM_BPF_MAP", preload::NO_MAP)
    .env("FAKE_TTM_PEER", client);
}

/// Connects to 127.0.0.1:port and reads the server's greeting.
fn hello(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

fn port_of(listening: &str) -> u16 {
    listening
        .rsplit(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn c_example_shows_the_real_ipv6_client() {
    let scratch = Scratch::new("c-example");
    let exe = scratch.0.join("server");
    let inc = format!("-I{}", root().join("include").display());
    preload::gcc(
        &exe,
        &[&inc, "-ldl"],
        &[&root().join("examples/c/server.c")],
    );
    for bind in ["127.0.0.1", "::"] {
        let mut cmd = Command::new(&exe);
        cmd.args(["-b", bind, "-n", "1", "0"]);
        shim_env(&mut cmd, "[2001:db8::7]:5555");
        let mut server = Server::start(&mut cmd);
        let port = port_of(&server.line());
        let reply = hello(port);
        assert_eq!(reply, "hello [2001:db8::7]:5555\n", "bound to {bind}");
        assert_eq!(server.line(), "accept: [2001:db8::7]:5555");
        assert_eq!(server.line(), "getpeername: [2001:db8::7]:5555");
        assert_eq!(server.line(), "getsockopt: addr 2001:db8::7 port 5555");
        assert_eq!(
            server.line(),
            "ttm_get_peer: [2001:db8::7]:5555 (backend kmod)"
        );
    }
}

#[test]
fn python_example_parses_the_vendor_struct() {
    let script = root().join("examples/python/server.py");
    for (client, want) in [
        (
            "[2001:db8::7]:5555",
            ["ipv6: 2001:db8::7", "('2001:db8::7', 5555, 0, 0)"],
        ),
        (
            "198.51.100.7:5555",
            ["ipv4: 198.51.100.7", "('::ffff:198.51.100.7', 5555, 0, 0)"],
        ),
    ] {
        let mut cmd = Command::new(PYTHON);
        cmd.arg(&script).args(["::", "0", "1"]);
        shim_env(&mut cmd, client);
        let mut server = Server::start(&mut cmd);
        let port = port_of(&server.line().replace(", 0, 0)", ""));
        assert_eq!(hello(port), "hello\n");
        let got: Vec<String> = (0..4).map(|_| server.line()).collect();
        assert_eq!(got[0], format!("get client info: {}", want[1]));
        assert_eq!(got[1], format!("getpeername: {}", want[1]));
        assert_eq!(got[2], "port: 5555");
        assert_eq!(got[3], want[0]);
    }
    // Without any backend, the vendor call fails and the script says so.
    let mut cmd = Command::new(PYTHON);
    cmd.arg(&script)
        .args(["127.0.0.1", "0", "1"])
        .env_remove("LD_PRELOAD");
    let mut server = Server::start(&mut cmd);
    let port = port_of(&server.line());
    assert_eq!(hello(port), "hello\n");
    assert!(server.line().starts_with("get client info: ('127.0.0.1', "));
    server.line();
    assert!(server.line().starts_with("getsockopt failed: "));
}

#[test]
fn python_example_is_valid_python3() {
    let out = Command::new(PYTHON)
        .args(["-m", "py_compile"])
        .arg(root().join("examples/python/server.py"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(root().join("examples/python/server.py")).unwrap();
    assert!(text.contains("struct.Struct(\"!bbH4s12s\")"));
}

#[test]
fn nginx_example_logs_the_real_ipv6_client() {
    if !Path::new("/usr/sbin/nginx").exists() {
        panic!("nginx missing: scripts/deps.sh installs nginx-light");
    }
    let scratch = Scratch::new("nginx");
    let dir = &scratch.0;
    // The example, pointed at a private prefix and an ephemeral port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conf = std::fs::read_to_string(root().join("examples/nginx/nginx.conf"))
        .unwrap()
        .replace("user www-data;", "")
        // One process in the foreground, so killing it leaves no worker behind.
        .replace(
            "worker_processes auto;",
            "worker_processes 1;\ndaemon off;\nmaster_process off;",
        )
        .replace(
            "/run/nginx.pid",
            &dir.join("nginx.pid").display().to_string(),
        )
        .replace("/var/log/nginx", &dir.display().to_string())
        // Still one dual-stack socket, but reachable on loopback only.
        .replace(
            "listen [::]:80 ipv6only=off;",
            &format!("listen [::ffff:127.0.0.1]:{port} ipv6only=off;"),
        );
    assert!(
        conf.contains("$remote_addr") && conf.contains(&format!(":{port} ")),
        "{conf}"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut cmd = Command::new("/usr/sbin/nginx");
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.join("error.log"));
    shim_env(&mut cmd, "[2001:db8::7]:5555");
    let _server = Server::start(&mut cmd);
    let mut reply = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write;
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
            s.read_to_string(&mut reply).unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(reply.ends_with("your address: 2001:db8::7\n"), "{reply}");
    let mut log = String::new();
    for _ in 0..100 {
        log = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
        if !log.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(log.starts_with("2001:db8::7 - - ["), "{log}");
}
