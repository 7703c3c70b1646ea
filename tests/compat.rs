//! Real servers, unmodified: the compatibility matrix (issue 4).
//!
//! nginx, Apache httpd, HAProxy, Node.js, Python, Java, Ruby, Perl, Go and
//! Rust std, each from its distribution package or toolchain, run behind
//! the LB emulator with the kernel side alone and with libttm.so preloaded
//! (both backends), on an AF_INET and on a dual-stack listener, for an IPv4
//! and an IPv6 client. Every cell is asserted: the real client wherever ttm
//! can reach the server's view, the LB's address where nothing can. The
//! observations are rendered into docs/compatibility.md, which must equal
//! the committed file; `TTM_UPDATE_COMPAT=1` writes it instead. Needs root.

#[path = "compat/mod.rs"]
mod compat;
mod harness;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Instant;

use compat::catalogue::Server;
use compat::matrix::check;
use compat::render::{UPDATE_COMMAND, document, summary};
use compat::{Env, Row, Status, WorkDir, run_server};
use harness::binaries::profile_dir;
use harness::{KernelSide, LbEmulator, Topology};

/// Each server gets six ports from here on, in the server's namespace.
const FIRST_PORT: u16 = 8100;

/// Compiles the Java, Go and Rust handlers on threads of their own while
/// the first servers run.
fn start_builds(build_dir: &Path) -> HashMap<Server, JoinHandle<Result<(), String>>> {
    Server::ALL
        .into_iter()
        .filter(|s| matches!(s, Server::Java | Server::Go | Server::Rust))
        .filter(|s| s.missing().is_empty())
        .map(|s| {
            let dir = build_dir.to_owned();
            (s, std::thread::spawn(move || s.build(&dir)))
        })
        .collect()
}

#[test]
fn compatibility_matrix() {
    harness::require_root();
    let started = Instant::now();
    let libttm = harness::libttm();
    let build_dir = profile_dir().join("compat");
    let mut builds = start_builds(&build_dir);

    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let mut lb = LbEmulator::start(&topo, &["--client", compat::matrix::CLAIM4]);
    let work = WorkDir::create(topo.id());
    let env = Env {
        topo: &topo,
        libttm,
        peers_map: ks.peers_map(),
        work: work.path(),
        build_dir: &build_dir,
    };

    let mut rows: Vec<Row> = Vec::new();
    for (i, server) in Server::ALL.into_iter().enumerate() {
        let t = Instant::now();
        let build = builds.remove(&server).map_or(Ok(()), |h| {
            h.join()
                .unwrap_or_else(|_| Err("the build thread panicked".into()))
        });
        let row = run_server(&env, &mut lb, server, FIRST_PORT + 10 * i as u16, build);
        match &row.status {
            Status::NotInstalled { missing } => {
                // Straight to stderr, past the test harness's capture: a
                // server left out must be seen even when the test passes
                // (the committed document may say so too).
                let _ = writeln!(
                    std::io::stderr(),
                    "compat: {} NOT INSTALLED ({missing:?} missing; package {}): \
                     reported as such in the matrix",
                    server.title(),
                    server.package()
                );
            }
            Status::Ran { version, .. } => eprintln!(
                "compat: {} ({version}) in {:?}",
                server.title(),
                t.elapsed()
            ),
        }
        rows.push(row);
    }

    let mut problems = Vec::new();
    for row in &rows {
        if let Status::Ran { cells, .. } = &row.status {
            for cell in cells {
                if let Err(e) = check(row.server.accept_path(), cell) {
                    problems.push(format!(
                        "{} {} {} {}: {e}",
                        row.server.title(),
                        cell.case.label(),
                        cell.listener.label(),
                        cell.mode.label()
                    ));
                }
            }
        }
    }
    eprintln!("\n{}", summary(&rows));
    eprintln!("compat: {} servers in {:?}", rows.len(), started.elapsed());

    let produced = document(&rows);
    // Always left where a reader can diff it against the committed file.
    let produced_path = build_dir.join("compatibility.md");
    std::fs::create_dir_all(&build_dir).expect("build dir");
    std::fs::write(&produced_path, &produced).expect("write the produced document");
    let committed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/compatibility.md");
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    let update = std::env::var_os("TTM_UPDATE_COMPAT").is_some_and(|v| v == "1");

    assert!(
        problems.is_empty(),
        "{} cell(s) do not show what they must:\n  {}\n(this run's document: {})",
        problems.len(),
        problems.join("\n  "),
        produced_path.display()
    );
    // The README carries the same summary table between two markers.
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("read README.md");
    let readme_produced = with_readme_summary(&readme, &summary(&rows));
    if update {
        if committed != produced {
            std::fs::create_dir_all(committed_path.parent().expect("docs/")).expect("docs/");
            std::fs::write(&committed_path, &produced).expect("write docs/compatibility.md");
            eprintln!("compat: wrote {}", committed_path.display());
        }
        if readme != readme_produced {
            std::fs::write(&readme_path, &readme_produced).expect("write README.md");
            eprintln!("compat: wrote the summary in {}", readme_path.display());
        }
        return;
    }
    assert!(
        readme == readme_produced,
        "README.md's compatibility summary is not what this run observed; regenerate it with\n  {UPDATE_COMMAND}"
    );
    if committed != produced {
        let first = committed
            .lines()
            .zip(produced.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(produced.lines().count()));
        panic!(
            "docs/compatibility.md is not what this run observed (first difference at line {}):\n  \
             committed: {:?}\n  observed:  {:?}\n\
             See `diff -u {} {}`; if the new matrix is right, regenerate it with\n  {UPDATE_COMMAND}",
            first + 1,
            committed.lines().nth(first).unwrap_or("<end of file>"),
            produced.lines().nth(first).unwrap_or("<end of file>"),
            committed_path.display(),
            produced_path.display(),
        );
    }
}

const SUMMARY_BEGIN: &str = "<!-- compat-summary:begin (generated by tests/compat.rs) -->\n";
const SUMMARY_END: &str = "<!-- compat-summary:end -->";

/// README.md with the text between the summary markers replaced.
fn with_readme_summary(readme: &str, table: &str) -> String {
    let begin = readme
        .find(SUMMARY_BEGIN)
        .expect("README.md lacks the compat-summary:begin marker")
        + SUMMARY_BEGIN.len();
    let end = readme[begin..]
        .find(SUMMARY_END)
        .expect("README.md lacks the compat-summary:end marker")
        + begin;
    format!("{}{}{}", &readme[..begin], table, &readme[end..])
}

#[test]
fn readme_summary_is_replaced_between_its_markers_only() {
    let readme = format!("intro\n{SUMMARY_BEGIN}old\n{SUMMARY_END}\noutro\n");
    assert_eq!(
        with_readme_summary(&readme, "| new |\n"),
        format!("intro\n{SUMMARY_BEGIN}| new |\n{SUMMARY_END}\noutro\n")
    );
}
