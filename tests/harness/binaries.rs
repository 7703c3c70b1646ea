//! The binaries under test (`ttmctl`, `libttm.so`) and the fixtures.
//!
//! Both live in the same target directory and profile as the running test
//! binary. A test that needs them builds them once per test process, so a
//! plain `cargo test` works without a prior `cargo build`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::process::run_to_end;

/// Debian's interpreter: user nobody cannot read a pyenv under /root.
pub const PYTHON: &str = "/usr/bin/python3";

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    assert!(p.exists(), "fixture {} is missing", p.display());
    p
}

/// target/<profile>, from this test binary's own path
/// (target/<profile>/deps/<test>-<hash>).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a directory");
    assert!(
        deps.file_name().is_some_and(|n| n == "deps"),
        "test binary {} is not in a cargo deps directory",
        exe.display()
    );
    deps.parent().expect("deps has a parent").to_owned()
}

/// Set by the kernel matrix (scripts/test-kernels.sh), which builds
/// everything on the host and runs the test binaries in a VM that has no
/// business running cargo: the binaries are then taken as they are.
pub const PREBUILT_ENV: &str = "TTM_TEST_PREBUILT";

/// Builds ttmctl and libttm.so into this test's target dir and profile
/// (once per process; later callers wait for the first).
fn ensure_built() -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let profile_dir = profile_dir();
        if std::env::var_os(PREBUILT_ENV).is_some_and(|v| v == "1") {
            return Ok(profile_dir);
        }
        let target_dir = profile_dir.parent().expect("profile dir has a parent");
        let profile = profile_dir
            .file_name()
            .expect("profile name")
            .to_string_lossy()
            .into_owned();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--quiet", "-p", "ttmctl", "-p", "ttm"])
            .arg("--target-dir")
            .arg(target_dir);
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let out = run_to_end(&mut cmd, Duration::from_secs(900));
        if out.status.success() && !out.timed_out {
            Ok(profile_dir)
        } else {
            Err(format!(
                "building ttmctl and libttm.so failed ({:?}):\n{}",
                out.status,
                out.stderr.trim_end()
            ))
        }
    });
    match built {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// target/<profile>/ttmctl, built if needed.
pub fn ttmctl_path() -> PathBuf {
    let p = ensure_built().join("ttmctl");
    assert!(p.exists(), "{} missing after build", p.display());
    p
}

/// target/<profile>/libttm.so, built if needed.
pub fn libttm() -> PathBuf {
    let p = ensure_built().join("libttm.so");
    assert!(p.exists(), "{} missing after build", p.display());
    p
}
