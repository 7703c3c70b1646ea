//! Build script of ttmctl:
//! - compiles the eBPF programs in `../bpf/` with clang into OUT_DIR, where
//!   `src/objects.rs` embeds them with `include_bytes!`;
//! - sets TTM_BPF_SHA256 (of the embedded ttm.bpf.o) and TTM_GIT_COMMIT,
//!   which `ttmctl --version` shows;
//! - renders the man pages (OUT_DIR/man/ttmctl*.8) and the bash, zsh and
//!   fish completions (OUT_DIR/completions/) from the clap definition in
//!   `src/cli.rs`, which the packages ship (scripts/package.sh).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{Roff, roman};
use sha2::{Digest, Sha256};

// The CLI definition, shared with main.rs. It names its value parsers by
// module: escape, format and trust are the real ones (std, anyhow and
// ttm-cidr); the simulate module needs aya, so its two parsers stand in
// here with the same types. Help and man pages never call a parser.
#[allow(dead_code)]
#[path = "src/cli.rs"]
mod cli;
#[allow(dead_code)]
#[path = "src/escape.rs"]
mod escape;
#[allow(dead_code)]
#[path = "src/format.rs"]
mod format;
#[allow(dead_code)]
#[path = "src/trust.rs"]
mod trust;
mod simulate {
    /// Stand-in for `simulate::Claim`: the type clap stores, never parsed here.
    #[derive(Clone)]
    pub struct Claim;

    impl Claim {
        pub fn parse(s: &str) -> anyhow::Result<Self> {
            anyhow::bail!("{s:?}: build.rs does not parse arguments")
        }
    }

    pub fn parse_hex(s: &str) -> anyhow::Result<Vec<u8>> {
        anyhow::bail!("{s:?}: build.rs does not parse arguments")
    }
}

/// Placeholder for `cli.rs`'s `crate::VERSION`; the pages get the real
/// string from `long_version()`.
const VERSION: &str = env!("CARGO_PKG_VERSION");

const OBJECTS: &[&str] = &["ttm", "ttm_lb", "ttm_detect"];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let bpf_dir = manifest
        .join("../bpf")
        .canonicalize()
        .expect("the bpf/ directory beside ttmctl/");
    build_bpf(&bpf_dir, &out);

    let bpf_sha256 = hex(&Sha256::digest(
        fs::read(out.join("ttm.bpf.o")).expect("read ttm.bpf.o"),
    ));
    let commit = git_commit(&manifest);
    println!("cargo:rustc-env=TTM_BPF_SHA256={bpf_sha256}");
    println!("cargo:rustc-env=TTM_GIT_COMMIT={commit}");

    let version = format!(
        "{} (commit {commit}, bpf sha256 {bpf_sha256})",
        env!("CARGO_PKG_VERSION")
    );
    // clap takes these names as &'static str (without its "string"
    // feature); a build script can afford to leak them.
    let mut cmd = cli::Cli::command().version(leak(version.clone()));
    write_completions(&mut cmd, &out.join("completions"));
    // The pages leave out clap's `help` subcommand (`--help` is on each page).
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    write_man_pages(&cmd, &out.join("man"), &version);
}

fn build_bpf(bpf_dir: &Path, out: &Path) {
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
            // The object's debug info and BTF name bpf/, not this checkout:
            // the same sources give the same object (and --version hash)
            // wherever they are built.
            .arg(format!("-ffile-prefix-map={}=bpf", bpf_dir.display()))
            .arg("-fdebug-compilation-dir=.")
            .arg(format!("-D__TARGET_ARCH_{}", arch.0))
            .arg(format!("-I/usr/include/{}", arch.1))
            .arg("-I")
            .arg(bpf_dir)
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

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The commit being built: $TTM_GIT_COMMIT if set (a build from a source
/// tarball), else `git rev-parse HEAD`, else "unknown". Reruns when HEAD
/// moves.
fn git_commit(manifest: &Path) -> String {
    println!("cargo:rerun-if-env-changed=TTM_GIT_COMMIT");
    if let Ok(c) = env::var("TTM_GIT_COMMIT") {
        return c;
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(manifest)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".into();
    };
    // HEAD, the branch it names and packed-refs: any of them changes when
    // a commit is made or checked out.
    let mut watch = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for w in watch {
        if let Some(p) = git(&["rev-parse", "--path-format=absolute", "--git-path", &w])
            && Path::new(&p).exists()
        {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    commit
}

/// ttmctl.8 for the command and ttmctl-<sub>[-<subsub>].8 for each
/// subcommand, as git and cargo do.
fn write_man_pages(cmd: &clap::Command, dir: &Path, version: &str) {
    fs::create_dir_all(dir).expect("create man dir");
    let mut page = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Administration")
        .source(format!("ttm {}", env!("CARGO_PKG_VERSION")));
    man.render_title(&mut page).unwrap();
    man.render_name_section(&mut page).unwrap();
    man.render_synopsis_section(&mut page).unwrap();
    man.render_description_section(&mut page).unwrap();
    man.render_options_section(&mut page).unwrap();
    man.render_subcommands_section(&mut page).unwrap();
    render_manual(cmd.get_after_long_help().map(|s| s.to_string()), &mut page);
    Roff::new()
        .control("SH", ["VERSION"])
        .text([roman(version)])
        .to_writer(&mut page)
        .unwrap();
    fs::write(dir.join("ttmctl.8"), page).expect("write ttmctl.8");
    for sub in pages_of(cmd) {
        write_subcommand_pages(sub, "ttmctl", dir);
    }
}

/// The subcommands that get a page: all but clap's own `help`.
fn pages_of(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| s.get_name() != "help")
}

fn write_subcommand_pages(sub: &clap::Command, parent: &str, dir: &Path) {
    let name = format!("{parent}-{}", sub.get_name());
    let man = clap_mangen::Man::new(sub.clone().name(leak(name.clone())))
        .section("8")
        .manual("System Administration")
        .source(format!("ttm {}", env!("CARGO_PKG_VERSION")));
    let mut page = Vec::new();
    man.render_title(&mut page).unwrap();
    man.render_name_section(&mut page).unwrap();
    man.render_synopsis_section(&mut page).unwrap();
    man.render_description_section(&mut page).unwrap();
    man.render_options_section(&mut page).unwrap();
    if sub.has_subcommands() {
        man.render_subcommands_section(&mut page).unwrap();
    }
    Roff::new()
        .control("SH", ["SEE ALSO"])
        .text([roman("ttmctl(8)")])
        .to_writer(&mut page)
        .unwrap();
    fs::write(dir.join(format!("{name}.8")), page).expect("write a subcommand page");
    for s in pages_of(sub) {
        write_subcommand_pages(s, &name, dir);
    }
}

/// `cli::MANUAL` as man page sections: a paragraph's first line
/// "Heading:" is the section name, lines indented by four spaces are
/// literal (commands), the rest is running text.
fn render_manual(text: Option<String>, page: &mut Vec<u8>) {
    let Some(text) = text else { return };
    let mut roff = Roff::new();
    for para in text.split("\n\n") {
        let mut lines = para.lines();
        let heading = lines.next().expect("a paragraph has a line");
        let heading = heading
            .strip_suffix(':')
            .unwrap_or_else(|| panic!("MANUAL paragraph without a heading: {heading:?}"));
        roff.control("SH", [heading.to_uppercase().as_str()]);
        let mut literal = false;
        for line in lines {
            match (line.strip_prefix("    "), literal) {
                (Some(cmd), false) => {
                    roff.control("RS", [] as [&str; 0])
                        .control("nf", [] as [&str; 0]);
                    roff.text([roman(cmd)]);
                    literal = true;
                }
                (Some(cmd), true) => {
                    roff.text([roman(cmd)]);
                }
                (None, true) => {
                    roff.control("fi", [] as [&str; 0])
                        .control("RE", [] as [&str; 0]);
                    roff.control("PP", [] as [&str; 0]).text([roman(line)]);
                    literal = false;
                }
                (None, false) => {
                    roff.control("PP", [] as [&str; 0]).text([roman(line)]);
                }
            }
        }
        if literal {
            roff.control("fi", [] as [&str; 0])
                .control("RE", [] as [&str; 0]);
        }
    }
    roff.to_writer(page).unwrap();
}

fn write_completions(cmd: &mut clap::Command, dir: &Path) {
    fs::create_dir_all(dir).expect("create completions dir");
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, cmd, "ttmctl", dir)
            .unwrap_or_else(|e| panic!("{shell} completion: {e}"));
    }
}
