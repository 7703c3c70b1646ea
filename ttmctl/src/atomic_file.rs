//! Writing a file so that a reader sees the old content or the new, never
//! a part of it: a temporary file in the same directory, fsync, rename.
//! node_exporter's textfile collector reads `*.prom` files at any moment.

use anyhow::{Context, Result};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub fn write(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", path.display()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Hidden and without the final suffix, so a collector matching
    // `*.prom` never picks up a half-written file.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(data)?;
        // The mode asked for, whatever the umask.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("ttm-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ttm.prom");
        write(&p, b"one\n", 0o644).unwrap();
        let ino = fs::metadata(&p).unwrap().ino();
        write(&p, b"two\n", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two\n");
        // A new file renamed over the old, not the old one rewritten.
        assert_ne!(fs::metadata(&p).unwrap().ino(), ino);
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o644);
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ttm.prom")]);
        assert!(write(&dir.join("missing/ttm.prom"), b"x", 0o644).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
