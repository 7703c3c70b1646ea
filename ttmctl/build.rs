//! Compiles the eBPF programs in `../bpf/` with clang and leaves the objects
//! in OUT_DIR, where `src/objects.rs` embeds them with `include_bytes!`.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const OBJECTS: &[&str] = &["ttm", "ttm_lb", "ttm_detect"];

fn main() {
    let bpf_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../bpf");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let clang = env::var("TTM_CLANG").unwrap_or_else(|_| "clang".into());
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").unwrap().as_str() {
        "x86_64" => ("x86", "x86_64-linux-gnu"),
        "aarch64" => ("arm64", "aarch64-linux-gnu"),
        other => panic!("no BPF build settings for target arch {other}"),
    };

    for h in ["ttm.h", "parse.h", "ttm_detect.h"] {
        println!("cargo:rerun-if-changed={}", bpf_dir.join(h).display());
    }
    println!("cargo:rerun-if-env-changed=TTM_CLANG");
    for name in OBJECTS {
        let src = bpf_dir.join(format!("{name}.bpf.c"));
        let obj = out.join(format!("{name}.bpf.o"));
        println!("cargo:rerun-if-changed={}", src.display());
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
            .arg(format!("-D__TARGET_ARCH_{}", arch.0))
            .arg(format!("-I/usr/include/{}", arch.1))
            .arg("-I")
            .arg(&bpf_dir)
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `{clang}` to build the eBPF programs ({e}); \
                     install clang and libbpf-dev (scripts/deps.sh does)"
                )
            });
        assert!(
            status.success(),
            "clang failed on {}; the headers come from libbpf-dev and linux-libc-dev",
            src.display()
        );
    }
}
