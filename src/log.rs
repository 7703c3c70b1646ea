//! One line per event on stderr, callable from the hooks: each line is
//! formatted into a stack buffer with core::fmt (no allocation, no locks)
//! and handed to write(2) whole, so lines from concurrent threads or
//! processes do not interleave (a pipe keeps writes up to PIPE_BUF whole).
//!
//! Text: `ttm[nginx:4242] info backend backend=bpf why="..."`
//! JSON (`TTM_LOG_FORMAT=json`):
//! `{"ts":1732570000.123456,"level":"info","prog":"nginx","pid":4242,"event":"backend",...}`

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::OnceLock;

use crate::errno;

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

impl Level {
    pub const DEFAULT: Level = Level::Warn;

    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" | "0" => Level::Off,
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::DEFAULT as u8);
static JSON: AtomicBool = AtomicBool::new(false);
static PROG: OnceLock<Box<str>> = OnceLock::new();

/// Set once by the constructor; before that, warnings go out as text.
pub fn configure(level: Level, json: bool, prog: &str) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    JSON.store(json, Ordering::Relaxed);
    let _ = PROG.set(prog.into());
}

/// Unit tests exercise warning paths on purpose; keep their output clean.
#[cfg(test)]
pub fn silence() {
    LEVEL.store(Level::Off as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level != Level::Off && level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// True the first time it is called with `flag`: for conditions that are
/// worth one warning, not one per connection.
pub fn first(flag: &AtomicBool) -> bool {
    // A plain load first: after the first time this is a read, not a
    // write to a shared cache line on every connection.
    !flag.load(Ordering::Relaxed) && !flag.swap(true, Ordering::Relaxed)
}

/// A field value. `Text` is free text (quoted in text lines); `Show` is a
/// token such as an address or a name; `Int` is a number in JSON.
pub enum Value<'a> {
    Text(&'a str),
    Show(&'a dyn fmt::Display),
    Int(i64),
}

const LINE_MAX: usize = 1024;
/// Room kept for the line's closing bytes (`"}` and newline).
const TAIL: usize = 4;

/// A fixed buffer that silently truncates: formatting into it never fails,
/// so no `fmt::Error` can turn into a panic anywhere.
struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
    truncated: bool,
}

impl Line {
    fn new() -> Self {
        Line {
            buf: [0; LINE_MAX],
            len: 0,
            truncated: false,
        }
    }

    /// Appends what fits. Once a line is cut nothing more is added, and a
    /// cut never splits a UTF-8 character or an escape sequence (escapes
    /// arrive as one short push), so a cut JSON line closed with `"}` is
    /// still valid when the cut fell inside a string.
    fn push(&mut self, bytes: &[u8]) {
        if self.truncated {
            return;
        }
        let room = LINE_MAX - TAIL - self.len;
        let mut n = bytes.len().min(room);
        if n < bytes.len() {
            self.truncated = true;
            if bytes.len() <= 6 {
                n = 0;
            }
            while n > 0 && bytes[n] & 0xc0 == 0x80 {
                n -= 1;
            }
        }
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn finish(&mut self, tail: &[u8]) -> &[u8] {
        let n = tail.len().min(TAIL);
        self.buf[self.len..self.len + n].copy_from_slice(&tail[..n]);
        &self.buf[..self.len + n]
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// How a character must be written so that a line never carries a control
/// character (C0, DEL, C1: ESC and CSI sequences drive terminals; CR and
/// LF split lines) or an ambiguous quote, whatever a value holds (values
/// come from the environment and from the program's name, both chosen by
/// whoever starts the process). `quote`: the quote character of the field
/// (text: only inside quoted text; JSON: always).
fn escape(c: char, json: bool, quote: bool) -> Option<([u8; 6], usize)> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = |e: u8| Some(([b'\\', e, 0, 0, 0, 0], 2));
    match c {
        '\\' => short(b'\\'),
        '"' if quote => short(b'"'),
        '\n' => short(b'n'),
        '\r' => short(b'r'),
        '\t' => short(b't'),
        '\0'..='\x1f' | '\x7f' if !json => {
            let b = c as u8;
            Some((
                [
                    b'\\',
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                    0,
                    0,
                ],
                4,
            ))
        }
        '\0'..='\x1f' | '\x7f'..='\u{9f}' => {
            let b = c as u8;
            Some((
                [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ],
                6,
            ))
        }
        _ => None,
    }
}

/// Escapes text on its way into a [`Line`], per [`escape`]; each escape
/// arrives as one short push, so a cut line never ends inside one.
struct Escaped<'a> {
    line: &'a mut Line,
    json: bool,
    quote: bool,
}

impl Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, c) in s.char_indices() {
            if let Some((esc, n)) = escape(c, self.json, self.quote) {
                self.line.push(&s.as_bytes()[start..i]);
                self.line.push(&esc[..n]);
                start = i + c.len_utf8();
            }
        }
        self.line.push(&s.as_bytes()[start..]);
        Ok(())
    }
}

/// A JSON string body.
fn json_str(line: &mut Line) -> Escaped<'_> {
    Escaped {
        line,
        json: true,
        quote: true,
    }
}

/// Text-format free text, inside quotes.
fn text_quoted(line: &mut Line) -> Escaped<'_> {
    Escaped {
        line,
        json: false,
        quote: true,
    }
}

/// A text-format token (program name, address, name): not quoted.
fn text_token(line: &mut Line) -> Escaped<'_> {
    Escaped {
        line,
        json: false,
        quote: false,
    }
}

fn now() -> (i64, i64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime is async-signal-safe and writes only `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec, ts.tv_nsec / 1000)
}

fn pid() -> i64 {
    // SAFETY: getpid has no preconditions and is async-signal-safe.
    i64::from(unsafe { libc::getpid() })
}

fn write_all(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writes from a live buffer of `bytes.len()` bytes to fd 2;
        // write(2) is async-signal-safe.
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        if n > 0 {
            bytes = &bytes[(n as usize).min(bytes.len())..];
        } else if n < 0 && errno::get() == libc::EINTR {
            continue;
        } else {
            return;
        }
    }
}

fn format(line: &mut Line, json: bool, level: Level, event: &str, fields: &[(&str, Value<'_>)]) {
    let prog = PROG.get().map(|p| &**p).unwrap_or("");
    if json {
        let (sec, usec) = now();
        let _ = write!(
            line,
            "{{\"ts\":{sec}.{usec:06},\"level\":\"{}\",\"prog\":\"",
            level.name()
        );
        let _ = json_str(line).write_str(prog);
        let _ = write!(line, "\",\"pid\":{},\"event\":\"", pid());
        let _ = json_str(line).write_str(event);
        line.push(b"\"");
        for (key, value) in fields {
            let _ = write!(line, ",\"{key}\":");
            match value {
                Value::Int(n) => {
                    let _ = write!(line, "{n}");
                }
                Value::Text(s) => {
                    line.push(b"\"");
                    let _ = json_str(line).write_str(s);
                    line.push(b"\"");
                }
                Value::Show(d) => {
                    line.push(b"\"");
                    let _ = write!(json_str(line), "{d}");
                    line.push(b"\"");
                }
            }
        }
    } else {
        line.push(b"ttm[");
        let _ = text_token(line).write_str(prog);
        let _ = write!(line, ":{}] {} ", pid(), level.name());
        let _ = text_token(line).write_str(event);
        for (key, value) in fields {
            let _ = write!(line, " {key}=");
            match value {
                Value::Int(n) => {
                    let _ = write!(line, "{n}");
                }
                Value::Text(s) => {
                    line.push(b"\"");
                    let _ = text_quoted(line).write_str(s);
                    line.push(b"\"");
                }
                Value::Show(d) => {
                    let _ = write!(text_token(line), "{d}");
                }
            }
        }
    }
}

/// Logs one event if `level` is enabled. Async-signal-safe; keeps errno.
pub fn event(level: Level, event: &str, fields: &[(&str, Value<'_>)]) {
    if !enabled(level) {
        return;
    }
    let _errno = errno::Guard::save();
    let json = JSON.load(Ordering::Relaxed);
    let mut line = Line::new();
    format(&mut line, json, level, event, fields);
    let tail: &[u8] = match (json, line.truncated) {
        (true, true) => b"\"}\n",
        (true, false) => b"}\n",
        (false, _) => b"\n",
    };
    write_all(line.finish(tail));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(json: bool, fields: &[(&str, Value<'_>)]) -> String {
        let mut line = Line::new();
        format(&mut line, json, Level::Info, "backend", fields);
        let tail: &[u8] = if json { b"}\n" } else { b"\n" };
        String::from_utf8(line.finish(tail).to_vec()).unwrap()
    }

    #[test]
    fn text_lines() {
        let addr: core::net::SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        let s = render(
            false,
            &[
                ("backend", Value::Show(&"bpf")),
                ("why", Value::Text("map \"x\"\nopened")),
                ("client", Value::Show(&addr)),
                ("fd", Value::Int(7)),
            ],
        );
        assert!(s.starts_with("ttm["), "{s}");
        assert!(
            s.ends_with(
                " info backend backend=bpf why=\"map \\\"x\\\"\\nopened\" client=[2001:db8::1]:80 fd=7\n"
            ),
            "{s}"
        );
    }

    #[test]
    fn json_lines_parse() {
        let s = render(
            true,
            &[
                ("why", Value::Text("a \"quoted\"\\ thing\u{1}")),
                ("fd", Value::Int(-3)),
            ],
        );
        let v: serde_json::Value = serde_json::from_str(s.trim_end()).unwrap();
        assert_eq!(v["event"], "backend");
        assert_eq!(v["level"], "info");
        assert_eq!(v["why"], "a \"quoted\"\\ thing\u{1}");
        assert_eq!(v["fd"], -3);
        assert!(v["ts"].as_f64().unwrap() > 1.6e9);
        assert!(v["pid"].as_i64().unwrap() > 0);
    }

    #[test]
    fn control_characters_never_reach_the_line() {
        let evil = "a\u{1b}[31mred\u{7}\u{0}\u{7f}\u{9b}2J\r\\\"z";
        let text = render(
            false,
            &[("why", Value::Text(evil)), ("var", Value::Show(&evil))],
        );
        assert!(
            text.ends_with(concat!(
                " why=\"a\\x1b[31mred\\x07\\x00\\x7f\\u009b2J\\r\\\\\\\"z\"",
                " var=a\\x1b[31mred\\x07\\x00\\x7f\\u009b2J\\r\\\\\"z\n"
            )),
            "{text}"
        );
        let json = render(
            true,
            &[("why", Value::Text(evil)), ("var", Value::Show(&evil))],
        );
        for line in [&text, &json] {
            let body = &line[..line.len() - 1];
            assert!(
                !body.chars().any(|c| c.is_control()),
                "a control character got through: {line:?}"
            );
        }
        let v: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
        assert_eq!(v["why"], evil);
        assert_eq!(v["var"], evil);
    }

    #[test]
    fn the_program_name_is_escaped_too() {
        let _ = PROG.set("x\u{1b}]0;owned\u{7}".into());
        let mut line = Line::new();
        format(&mut line, false, Level::Warn, "e", &[]);
        let out = String::from_utf8(line.finish(b"\n").to_vec()).unwrap();
        // Another test may have named the program first; either way, no
        // control character.
        assert!(!out.trim_end().chars().any(|c| c.is_control()), "{out:?}");
    }

    #[test]
    fn long_lines_are_cut_not_panicking() {
        let long = "x".repeat(5000);
        let s = render(true, &[("why", Value::Text(&long))]);
        assert!(s.len() <= LINE_MAX);
        let mut line = Line::new();
        format(
            &mut line,
            true,
            Level::Warn,
            "e",
            &[("why", Value::Text(&long))],
        );
        assert!(line.truncated);
        let out = String::from_utf8(line.finish(b"\"}\n").to_vec()).unwrap();
        serde_json::from_str::<serde_json::Value>(out.trim_end()).unwrap();
    }

    #[test]
    fn levels() {
        assert_eq!(Level::parse(" DEBUG "), Some(Level::Debug));
        assert_eq!(Level::parse("loud"), None);
        assert!(Level::Error < Level::Debug);
    }
}
