//! Text ttmctl echoes back — paths, flag values, whole messages — with its
//! control characters escaped, so that a value holding ESC or a newline
//! cannot recolour or retitle the operator's terminal, or forge a line in
//! a log that collects ttmctl's output.

use anyhow::{Result, bail};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Control characters (C0, DEL, C1) and the bidirectional overrides that
/// can make a terminal show text in another order than it is.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape_except(s: &str, keep: &[char]) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !is_unsafe(c) || keep.contains(&c) {
            out.push(c);
        } else if c.is_ascii() {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    out
}

/// One value: every control character escaped, newlines and tabs too.
pub fn value(s: &str) -> String {
    escape_except(s, &[])
}

/// A path, as [`value`] (bytes that are not UTF-8 show as U+FFFD).
pub fn path(p: &Path) -> String {
    value(&p.to_string_lossy())
}

/// A message ttmctl composed from its own text and escaped values: control
/// characters escaped except the newlines and tabs its multi-line messages
/// (a verifier log) are made of.
pub fn message(s: &str) -> String {
    escape_except(s, &['\n', '\t'])
}

/// clap value parser for directory flags. No cgroup or bpffs directory
/// has a control character in its name unless someone means harm, and
/// refusing them here keeps them out of every line that names the path.
pub fn path_arg(s: &str) -> Result<PathBuf> {
    if s.chars().any(is_unsafe) {
        bail!(
            "\"{}\" holds control characters; no ttm directory has them",
            value(s)
        );
    }
    Ok(PathBuf::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_written_as_escapes() {
        assert_eq!(value("a\x1b[31mb"), "a\\x1b[31mb");
        assert_eq!(value("line\nforged"), "line\\x0aforged");
        assert_eq!(value("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(value("\u{202e}cod.exe"), "\\u{202e}cod.exe");
        assert_eq!(value("/sys/fs/bpf/ttm"), "/sys/fs/bpf/ttm");
        assert_eq!(value("naïve 名前"), "naïve 名前");
        assert_eq!(message("verifier:\n\tR1 ok\x07"), "verifier:\n\tR1 ok\\x07");
        assert_eq!(
            path(Path::new("/sys/fs/bpf/\x1b]0;x\x07")),
            "/sys/fs/bpf/\\x1b]0;x\\x07"
        );
    }

    #[test]
    fn directory_flags_refuse_control_characters() {
        assert_eq!(
            path_arg("/sys/fs/bpf/ttm").unwrap(),
            Path::new("/sys/fs/bpf/ttm")
        );
        let e = path_arg("/sys/fs/bpf/\x1b[2Jttm").unwrap_err().to_string();
        assert!(e.contains("\\x1b[2J") && !e.contains('\x1b'), "{e}");
    }
}
