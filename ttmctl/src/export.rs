//! The trust list, exported for libttm.so: `load` writes
//! `<run dir>/<basename of the pin dir>.json` where an unprivileged server
//! can read it, `unload` removes it. With it libttm.so knows, without
//! TTM_TRUSTED, which addresses can be an LB's, and spends no lookup on
//! connections the kernel side already rewrote (src/trust_export.rs reads
//! it).
//!
//! ```text
//! {"schema":1, "pin_dir":"/sys/fs/bpf/ttm", "trusted":["10.0.0.0/8"], "any":false}
//! ```
//!
//! `any` is true when no list is enforced (`--trust any`, or no `--trust`).
//! The run dir is /run/ttm unless TTM_RUN_DIR says otherwise (libttm.so
//! honours the same variable). Written atomically (temporary file, then
//! rename), directory 0755, file 0644.

use anyhow::{Context, Result};
use serde_json::json;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::trust::Trust;

const DEFAULT_RUN_DIR: &str = "/run/ttm";
const SCHEMA: u32 = 1;

fn run_dir() -> PathBuf {
    match std::env::var_os("TTM_RUN_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(DEFAULT_RUN_DIR),
    }
}

/// The pin dir as the file names it (and as libttm.so compares it).
fn canonical(pin_dir: &Path) -> PathBuf {
    fs::canonicalize(pin_dir).unwrap_or_else(|_| pin_dir.to_owned())
}

/// `<run dir>/<basename>.json`.
fn file_for(run_dir: &Path, pin_dir: &Path) -> Result<PathBuf> {
    let base = canonical(pin_dir)
        .file_name()
        .with_context(|| format!("pin dir {} has no name", pin_dir.display()))?
        .to_owned();
    let mut name = base;
    name.push(".json");
    Ok(run_dir.join(name))
}

/// What the file says for this load.
fn render(pin_dir: &Path, trust: &Trust) -> String {
    let doc = json!({
        "schema": SCHEMA,
        "pin_dir": canonical(pin_dir).to_string_lossy(),
        "trusted": trust.prefixes().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "any": !trust.enforced(),
    });
    format!("{doc}\n")
}

/// Writes the export for a kit just loaded at `pin_dir`.
fn write(run_dir: &Path, pin_dir: &Path, trust: &Trust) -> Result<PathBuf> {
    let file = file_for(run_dir, pin_dir)?;
    let dir = file.parent().context("run dir")?;
    if !dir.is_dir() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod 755 {}", dir.display()))?;
    }
    crate::atomic_file::write(&file, render(pin_dir, trust).as_bytes(), 0o644)?;
    Ok(file)
}

/// Removes the export of the kit at `pin_dir`, if the file there names
/// this pin dir (another pin dir with the same basename keeps its own).
pub fn remove(pin_dir: &Path) {
    remove_from(&run_dir(), pin_dir);
}

fn remove_from(run_dir: &Path, pin_dir: &Path) {
    let Ok(file) = file_for(run_dir, pin_dir) else {
        return;
    };
    let ours = canonical(pin_dir);
    let names_us = fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["pin_dir"].as_str().map(Path::new) == Some(ours.as_path()));
    if names_us {
        let _ = fs::remove_file(&file);
    }
}

/// `write`, for `load`: a load that worked stays a success when the export
/// cannot be written (libttm.so then looks every LB address up), but no
/// stale list may stay behind, so the old file goes.
pub fn write_or_warn(pin_dir: &Path, trust: &Trust) {
    let run_dir = run_dir();
    if let Err(e) = write(&run_dir, pin_dir, trust) {
        remove_from(&run_dir, pin_dir);
        eprintln!(
            "ttm: warning: trust list not exported for libttm.so ({e:#}); preloaded servers \
             without TTM_TRUSTED will look up every connection"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_shape() {
        let pin = Path::new("/nonexistent/bpf/ttm");
        let only = Trust::Only(ttm_cidr::parse_list("10.0.0.0/8 2001:db8::/32").unwrap());
        let v: serde_json::Value = serde_json::from_str(&render(pin, &only)).unwrap();
        assert_eq!(
            v,
            json!({"schema": 1, "pin_dir": "/nonexistent/bpf/ttm",
                   "trusted": ["10.0.0.0/8", "2001:db8::/32"], "any": false})
        );
        for t in [Trust::Any, Trust::Unset] {
            let v: serde_json::Value = serde_json::from_str(&render(pin, &t)).unwrap();
            assert_eq!(v["any"], true);
            assert_eq!(v["trusted"], json!([]));
        }
    }

    #[test]
    fn written_atomically_world_readable_and_removed_only_by_its_own_pin_dir() {
        let scratch = std::env::temp_dir().join(format!("ttmctl-export-{}", std::process::id()));
        let _ = fs::remove_dir_all(&scratch);
        let run = scratch.join("run/ttm");
        let (a, b) = (scratch.join("a/ttm"), scratch.join("b/ttm"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        let file = write(&run, &a, &Trust::Any).unwrap();
        assert_eq!(file, run.join("ttm.json"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&run), mode(&file)), (0o755, 0o644));
        assert_eq!(fs::read_dir(&run).unwrap().count(), 1, "no temporary left");
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
        assert_eq!(v["pin_dir"], a.canonicalize().unwrap().to_str().unwrap());
        // Same basename, another kit: not ours to remove.
        remove_from(&run, &b);
        assert!(file.exists());
        remove_from(&run, &a);
        assert!(!file.exists());
        fs::remove_dir_all(&scratch).unwrap();
    }
}
