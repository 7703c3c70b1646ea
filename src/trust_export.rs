//! The trust list `ttmctl load --trust` exports for libttm.so, read once at
//! load time when TTM_TRUSTED is not set.
//!
//! `ttmctl load` writes `<run dir>/<basename of its pin dir>.json`
//! (`/run/ttm/ttm.json` by default; TTM_RUN_DIR moves it), and `unload`
//! removes it:
//!
//! ```text
//! {"schema":1, "pin_dir":"/sys/fs/bpf/ttm", "trusted":["10.0.0.0/8"], "any":false}
//! ```
//!
//! With it the hooks know which returned addresses can be an LB's: any
//! other (a connection the kernel side already rewrote, a direct client)
//! is left as it is without a lookup. The file is believed only for the
//! kit it names: its `pin_dir` must be ours and still hold the kit's pins
//! (a file left by a crashed ttmctl, or one of another pin directory with
//! the same basename, is ignored and the reason logged), and every entry
//! must parse; otherwise every LB address is looked up, as without a file.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use ttm_cidr::Cidr;

use crate::backend::{Host, kit_at};

/// The schema this library reads.
const SCHEMA: u64 = 1;

/// What the file says.
#[derive(Debug, PartialEq, Eq)]
pub enum Exported {
    /// No file: no kit loaded for this pin dir (or one whose ttmctl
    /// exports nothing).
    Missing,
    /// The kernel side honours every source (`--trust any`, or no
    /// `--trust`): every LB address may carry a client.
    Any,
    /// The kernel side honours options only from these prefixes.
    Only(Vec<Cidr>),
}

/// `<run_dir>/<basename of pin_dir>.json`, or None for a pin dir with no
/// basename (`/`).
pub fn path(run_dir: &Path, pin_dir: &Path) -> Option<PathBuf> {
    let base = pin_dir.file_name()?;
    let mut name = base.to_owned();
    name.push(".json");
    Some(run_dir.join(name))
}

/// Reads and checks the export for the kit pinned at `pin_dir`. Err is
/// why a file that is there was ignored.
pub fn read(run_dir: &Path, pin_dir: &Path, host: &impl Host) -> Result<Exported, String> {
    let Some(file) = path(run_dir, pin_dir) else {
        return Ok(Exported::Missing);
    };
    let c_path = CString::new(file.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let bytes = match crate::small_file::read(&c_path) {
        Ok(b) => b,
        Err(libc::ENOENT | libc::ENOTDIR) => return Ok(Exported::Missing),
        Err(e) => return Err(format!("{}", std::io::Error::from_raw_os_error(e))),
    };
    let exported = parse(&bytes, pin_dir)?;
    if !kit_at(pin_dir, host) {
        return Err(format!(
            "no ttm pins in {}: a file left behind by a ttmctl that did not unload",
            pin_dir.display()
        ));
    }
    Ok(exported)
}

/// The file's content, for the kit at `pin_dir`.
fn parse(bytes: &[u8], pin_dir: &Path) -> Result<Exported, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match v.get("schema").and_then(Value::as_u64) {
        Some(SCHEMA) => {}
        Some(n) => return Err(format!("schema {n}; this libttm reads schema {SCHEMA}")),
        None => return Err("no \"schema\" number".into()),
    }
    let named = v
        .get("pin_dir")
        .and_then(Value::as_str)
        .ok_or("no \"pin_dir\" string")?;
    // ttmctl writes the canonical path; ours may be spelt another way.
    let ours = std::fs::canonicalize(pin_dir).unwrap_or_else(|_| pin_dir.to_owned());
    if Path::new(named) != ours {
        return Err(format!("it is for pin dir {named}, not {}", ours.display()));
    }
    match v.get("any").and_then(Value::as_bool) {
        Some(true) => return Ok(Exported::Any),
        Some(false) => {}
        None => return Err("no \"any\" boolean".into()),
    }
    let entries = v
        .get("trusted")
        .and_then(Value::as_array)
        .ok_or("no \"trusted\" list")?;
    let mut list = Vec::with_capacity(entries.len());
    for e in entries {
        let s = e
            .as_str()
            .ok_or_else(|| format!("entry {e} is not a string"))?;
        // One bad entry spoils the file: a partial list would skip the
        // lookup for an LB the kernel trusts.
        list.push(Cidr::parse(s).map_err(|e| e.to_string())?);
    }
    Ok(Exported::Only(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(pin: &str, rest: &str) -> Vec<u8> {
        format!("{{\"schema\":1,\"pin_dir\":\"{pin}\",{rest}}}").into_bytes()
    }

    const PIN: &str = "/nonexistent/bpf/ttm";

    #[test]
    fn the_three_answers() {
        let pin = Path::new(PIN);
        assert_eq!(
            parse(&doc(PIN, r#""trusted":[],"any":true"#), pin),
            Ok(Exported::Any)
        );
        let Ok(Exported::Only(l)) = parse(
            &doc(
                PIN,
                r#""trusted":["10.0.0.0/8","2001:db8::/32"],"any":false,"new":1"#,
            ),
            pin,
        ) else {
            panic!("not a list")
        };
        assert_eq!(l.len(), 2);
        assert!(l[0].contains("10.1.2.3".parse().unwrap()));
        assert_eq!(
            parse(&doc(PIN, r#""trusted":[],"any":false"#), pin),
            Ok(Exported::Only(vec![]))
        );
    }

    #[test]
    fn what_is_ignored_says_why() {
        let pin = Path::new(PIN);
        let why = |b: &[u8]| parse(b, pin).unwrap_err();
        assert!(why(b"{").starts_with("not JSON"));
        assert!(why(br#"{"schema":2}"#).contains("schema 2"));
        assert!(
            why(&doc("/sys/fs/bpf/other/ttm", r#""any":true"#)).contains("/sys/fs/bpf/other/ttm")
        );
        assert!(why(&doc(PIN, r#""trusted":["10.0.0.1/8"],"any":false"#)).contains("10.0.0.0/8"));
        assert!(why(&doc(PIN, r#""trusted":[1],"any":false"#)).contains("not a string"));
        assert!(why(&doc(PIN, r#""trusted":[]"#)).contains("\"any\""));
    }

    #[test]
    fn named_by_the_pin_dirs_basename() {
        assert_eq!(
            path(Path::new("/run/ttm"), Path::new("/sys/fs/bpf/ttm")),
            Some(PathBuf::from("/run/ttm/ttm.json"))
        );
        assert_eq!(path(Path::new("/run/ttm"), Path::new("/")), None);
    }
}
