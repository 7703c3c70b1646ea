//! The eBPF option walker (`bpf/parse.h`) compiled natively with gcc and
//! run under AddressSanitizer and UBSan: the table of cases in
//! `tests/parser/parse_test.c` (among them malformed lists no LB emulator
//! can put on the wire) and a fuzz run. The same header is what
//! `ttm.bpf.o` is built from.

use std::path::Path;
use std::process::Command;

#[test]
fn option_walker_cases_and_fuzz_under_sanitizers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = std::env::temp_dir().join(format!("ttm-parse-test-{}", std::process::id()));
    let build = Command::new("gcc")
        .args(["-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror"])
        .args(["-fsanitize=address,undefined", "-fno-sanitize-recover=all"])
        .arg("-I")
        .arg(root.join("bpf"))
        .arg(root.join("tests/parser/parse_test.c"))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("gcc (installed by scripts/deps.sh)");
    assert!(
        build.status.success(),
        "building the parser test failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let run = Command::new(&exe)
        .arg("300000")
        .output()
        .expect("run parser test");
    let _ = std::fs::remove_file(&exe);
    let out = String::from_utf8_lossy(&run.stdout);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "parser test failed:\n{out}{err}");
    assert!(
        out.contains(" passed, 0 failed"),
        "unexpected output: {out}{err}"
    );
}
