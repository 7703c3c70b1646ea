//! ttm as an operator runs it: `ttmctl status` telling the truth (exit
//! codes, per-program attachment, a removed cgroup), what a restart of the
//! served unit does, counters across reloads and upgrades, Prometheus
//! metrics checked by promtool, status without root, and the warnings.
//! Real programs on the harness's own cgroups (never the root), the LB
//! emulator and real servers in network namespaces. Needs root.

mod harness;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::cgroup::ChildCgroup;
use harness::process::run_to_end;
use harness::ttmctl::{counter_of, status_exit, ttmctl};
use harness::{KernelSide, Launch, LbEmulator, Topology, connect, echo_server, ttmctl_path};
use serde_json::{Value, json};

const CLAIM4: &str = "203.0.113.7";
const CLAIM_PORT: u64 = 4242;

fn claim() -> String {
    format!("{CLAIM4}:{CLAIM_PORT}")
}

/// One connection from the client side to an echo server running in
/// `cgroup` of the server side; returns what accept() gave the server.
fn accept_seen_from(topo: &Topology, cgroup: &Path) -> Value {
    let launch = Launch::new(topo.server().netns().path(), cgroup);
    let server = echo_server(&launch, &["--family", "inet"]);
    let rec = connect(
        &topo.client().launch(),
        &topo.server_v4().to_string(),
        server.port(),
        1,
        &[],
    )
    .pop()
    .expect("one record");
    rec["reply"]["accept"].clone()
}

fn lb_address(topo: &Topology, rec: &Value) -> bool {
    rec[0] == json!(topo.client_v4().to_string())
}

fn programs(st: &Value) -> &Vec<Value> {
    st["programs"].as_array().expect("programs array")
}

fn wanted(st: &Value) -> impl Iterator<Item = &Value> {
    programs(st).iter().filter(|p| p["state"] != "off")
}

/// `ttmctl status --pin-dir <pin> <args>` (code, stdout, stderr).
fn status_with(pin: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["status", "--pin-dir", pin.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = ttmctl(&all);
    (
        out.status.code().expect("exit code"),
        out.stdout,
        out.stderr,
    )
}

/// Runs `promtool check metrics` on `text`; Ok or its complaint.
fn promtool(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus, scripts/deps/ops.list)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    }
}

fn assert_promtool_ok(text: &str) {
    if let Err(e) = promtool(text) {
        panic!("promtool check metrics: {e}\n{text}");
    }
}

#[test]
fn a_removed_cgroup_is_reported_until_load_attaches_again() {
    let topo = Topology::new();
    // The unit's own cgroup, as a service's is: systemd removes it when
    // the service stops and makes a new one when it starts.
    let app = ChildCgroup::create(topo.server_cgroup(), "app.service");
    let mut ks = KernelSide::load_on(&topo, app.path(), &["--trust", "any"]);
    let _lb = LbEmulator::start(&topo, &["--client", &claim()]);
    let app_path = json!(app.path().to_str().unwrap());

    let out = ks.try_reload(&["--trust", "any"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("cgroup of app.service") && out.stderr.contains("systemd removes it"),
        "load on a unit's own cgroup must warn: {}",
        out.stderr
    );

    let (code, st) = ks.status_exit();
    assert_eq!(code, 0, "{st:#}");
    assert_eq!(st["state"], "ok", "{st:#}");
    assert_eq!(st["schema"], 1);
    assert_eq!(st["degraded"], false);
    assert_eq!(st["cgroup"], app_path);
    assert_eq!(wanted(&st).count(), 5, "{st:#}");
    for p in wanted(&st) {
        assert_eq!(p["attached"], true, "{p}");
        assert_eq!(p["state"], "attached", "{p}");
        assert_eq!(p["cgroup"], app_path, "{p}");
    }
    let warnings = st["warnings"].to_string();
    assert!(warnings.contains("app.service"), "{warnings}");
    assert_eq!(
        accept_seen_from(&topo, app.path()),
        json!([CLAIM4, CLAIM_PORT])
    );

    // The service stops: its cgroup goes, and every link with it.
    app.remove().unwrap();
    let (code, st) = ks.status_exit();
    assert_eq!(code, 2, "degraded: {st:#}");
    assert_eq!(st["state"], "degraded");
    assert_eq!(st["degraded"], true);
    assert_eq!(st["loaded"], true);
    assert_eq!(st["cgroup"], Value::Null, "{st:#}");
    for p in wanted(&st) {
        assert_eq!(p["attached"], false, "{p}");
        assert!(
            p["state"] == "cgroup_removed" || p["state"] == "detached",
            "{p}"
        );
    }
    let (code, text, _) = status_with(ks.pin_dir(), &[]);
    assert_eq!(code, 2);
    assert!(text.starts_with("ttm: DEGRADED"), "{text}");
    assert!(text.contains("NOT SERVING"), "{text}");
    let (code, prom, _) = status_with(ks.pin_dir(), &["--format", "prometheus"]);
    assert_eq!(code, 2);
    assert!(prom.contains("\nttm_degraded 1\n"), "{prom}");
    assert!(
        prom.contains("ttm_program_attached{program=\"ttm_parse\""),
        "{prom}"
    );
    assert_promtool_ok(&prom);

    // It starts again: a new directory at the same path is another
    // cgroup, which nothing serves. Status keeps saying so.
    app.recreate();
    let (code, st) = ks.status_exit();
    assert_eq!(code, 2, "a recreated cgroup is not served: {st:#}");
    let seen = accept_seen_from(&topo, app.path());
    assert!(lb_address(&topo, &seen), "unserved, yet rewritten: {seen}");

    // Loading again attaches to the new cgroup; status is green again.
    ks.reload(&["--trust", "any"]);
    let (code, st) = ks.status_exit();
    assert_eq!(code, 0, "{st:#}");
    for p in wanted(&st) {
        assert_eq!(p["cgroup"], app_path, "{p}");
    }
    assert_eq!(
        accept_seen_from(&topo, app.path()),
        json!([CLAIM4, CLAIM_PORT])
    );

    // Unloaded: exit 3, and the same document shape as when loaded.
    ks.unload();
    let (code, gone) = ks.status_exit();
    assert_eq!(code, 3, "{gone:#}");
    assert_eq!(gone["state"], "not_loaded");
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&gone), keys(&st));
    assert_eq!(programs(&gone).len(), programs(&st).len());
    assert_eq!(keys(&gone["counters"]), keys(&st["counters"]));
    assert!(gone["counters"]["found_v4"].is_null(), "{gone:#}");
}

/// The design the README and ttm.conf recommend: attach to a parent
/// that outlives the services (system.slice; here the topology's server
/// cgroup stands in for it). Restarting a service below it changes
/// nothing.
#[test]
fn a_parent_cgroup_keeps_serving_a_restarted_service() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &["--trust", "any"]);
    let app = ChildCgroup::create(topo.server_cgroup(), "app.service");
    let _lb = LbEmulator::start(&topo, &["--client", &claim()]);

    assert_eq!(
        accept_seen_from(&topo, app.path()),
        json!([CLAIM4, CLAIM_PORT])
    );
    for _ in 0..2 {
        app.recreate(); // systemctl restart app
        let (code, st) = ks.status_exit();
        assert_eq!(code, 0, "{st:#}");
        assert_eq!(
            accept_seen_from(&topo, app.path()),
            json!([CLAIM4, CLAIM_PORT])
        );
    }
    assert_eq!(ks.counter("found_v4"), 3);
}

/// The counters of `<pin>/ttm_counters` as bpftool sees them: slot ->
/// sum over CPUs.
fn bpftool_sum(map: &Path, slot: u8) -> u64 {
    let out = run_to_end(
        Command::new("bpftool").args([
            "-j",
            "map",
            "lookup",
            "pinned",
            map.to_str().unwrap(),
            "key",
            &slot.to_string(),
            "0",
            "0",
            "0",
        ]),
        Duration::from_secs(10),
    )
    .expect_success("bpftool map lookup");
    let v: Value = serde_json::from_str(out.trim()).expect("bpftool JSON");
    v["values"]
        .as_array()
        .expect("per-CPU values")
        .iter()
        .map(|c| {
            let bytes: Vec<u8> = c["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    u8::from_str_radix(b.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
                })
                .collect();
            u64::from_le_bytes(bytes.try_into().unwrap())
        })
        .sum()
}

fn bpftool(args: &[&str]) -> String {
    run_to_end(Command::new("bpftool").args(args), Duration::from_secs(10))
        .expect_success(&format!("bpftool {}", args.join(" ")))
}

#[test]
fn counters_survive_reloads_and_an_older_layout_is_carried_over() {
    let topo = Topology::new();
    let mut ks = KernelSide::load(&topo, &["--trust", "any"]);
    let _lb = LbEmulator::start(&topo, &["--client", &claim()]);
    let hit = |n| {
        let server = echo_server(&topo.server().launch(), &["--family", "inet"]);
        connect(
            &topo.client().launch(),
            &topo.server_v4().to_string(),
            server.port(),
            n,
            &[],
        );
    };
    hit(3);
    assert_eq!(ks.counter("found_v4"), 3);
    ks.reload(&["--trust", "any", "--no-rewrite"]);
    assert_eq!(ks.counter("found_v4"), 3, "a reload reset the counters");
    assert_eq!(ks.counter("rewrite4"), 6);
    hit(2);
    ks.reload(&["--trust", "any"]);
    assert_eq!(ks.counter("found_v4"), 5);
    let map = ks.pin_dir().join("ttm_counters");
    let shown = bpftool(&["-j", "map", "show", "pinned", map.to_str().unwrap()]);
    let shown: Value = serde_json::from_str(shown.trim()).unwrap();
    assert_eq!(shown["max_entries"], 64, "{shown}");
    let mode = fs::metadata(&map).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "counters readable without root");

    // An upgrade from a version whose pinned counters map had fewer
    // slots: it is replaced, its counts carried into the new one.
    ks.unload();
    fs::create_dir(ks.pin_dir()).unwrap();
    bpftool(&[
        "map",
        "create",
        map.to_str().unwrap(),
        "type",
        "percpu_array",
        "key",
        "4",
        "value",
        "8",
        "entries",
        "18",
        "name",
        "ttm_counters",
    ]);
    // Slot 0 is found_v4, slot 12 rewrite6 (enum ttm_counter order).
    for (slot, v) in [(0u8, 7u8), (12, 9)] {
        bpftool(&[
            "map",
            "update",
            "pinned",
            map.to_str().unwrap(),
            "key",
            &slot.to_string(),
            "0",
            "0",
            "0",
            "value",
            &v.to_string(),
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
        ]);
    }
    let (old_found, old_rewrite6) = (bpftool_sum(&map, 0), bpftool_sum(&map, 12));
    assert!(old_found >= 7 && old_rewrite6 >= 9);
    let out = ks.try_reload(&["--trust", "any"]);
    assert!(
        out.status.success(),
        "load over an old counters map: {out:?}"
    );
    let st = ks.status();
    assert_eq!(counter_of(&st, "found_v4"), old_found, "{st}");
    assert_eq!(counter_of(&st, "rewrite6"), old_rewrite6, "{st}");
    assert_eq!(counter_of(&st, "no_option"), 0, "{st}");
    let shown = bpftool(&["-j", "map", "show", "pinned", map.to_str().unwrap()]);
    let shown: Value = serde_json::from_str(shown.trim()).unwrap();
    assert_eq!(
        shown["max_entries"], 64,
        "the old map was not replaced: {shown}"
    );
    assert!(!ks.pin_dir().join("ttm_counters_old").exists());
    hit(1);
    assert_eq!(ks.counter("found_v4"), old_found + 1);
}

#[test]
fn prometheus_metrics_pass_promtool_and_are_written_atomically() {
    // The check itself must be able to fail.
    assert!(
        promtool("# HELP x_requests x\n# TYPE x_requests counter\nx_requests 1\n").is_err(),
        "promtool accepts a counter without _total: it checks nothing"
    );
    let topo = Topology::new();
    let trust = format!("{}/32", topo.client_v4());
    let mut ks = KernelSide::load(&topo, &["--trust", &trust]);
    let _lb = LbEmulator::start(&topo, &["--client", &claim()]);
    accept_seen_from(&topo, topo.server_cgroup());

    let (code, prom, _) = status_with(ks.pin_dir(), &["--format", "prometheus"]);
    assert_eq!(code, 0, "{prom}");
    assert_promtool_ok(&prom);
    let cg = topo.server_cgroup().to_str().unwrap();
    for line in [
        "ttm_loaded 1".to_string(),
        "ttm_degraded 0".into(),
        "ttm_status_error 0".into(),
        "ttm_trust_enforced 1".into(),
        "ttm_trust_warning 0".into(),
        "ttm_events_total{event=\"found_v4\"} 1".into(),
        "ttm_events_total{event=\"rewrite4\"} 2".into(),
        format!(
            "ttm_program_attached{{program=\"ttm_parse\",state=\"attached\",cgroup=\"{cg}\"}} 1"
        ),
    ] {
        assert!(
            prom.lines().any(|l| l == line),
            "no line {line:?} in:\n{prom}"
        );
    }

    // --output: the same text, replaced whole by rename, 0644, nothing
    // else left in the directory (node_exporter reads every *.prom).
    let dir = std::env::temp_dir().join(format!("ttm-ops-prom-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ttm.prom");
    let f = file.to_str().unwrap();
    fs::write(&file, "stale\n").unwrap();
    let (code, stdout, _) = status_with(ks.pin_dir(), &["--format", "prometheus", "--output", f]);
    assert_eq!((code, stdout.as_str()), (0, ""));
    let written = fs::read_to_string(&file).unwrap();
    assert_eq!(written, prom);
    let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["ttm.prom"]);
    let (code, json_out, _) = status_with(ks.pin_dir(), &["--json", "--output", f]);
    assert_eq!((code, json_out.as_str()), (0, ""));
    let doc: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(doc["state"], "ok");
    let missing = dir.join("no/such/dir/ttm.prom");
    let (code, _, err) = status_with(
        ks.pin_dir(),
        &[
            "--format",
            "prometheus",
            "--output",
            missing.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ttm.prom"), "{err}");
    fs::remove_dir_all(&dir).unwrap();

    // Not loaded: still valid, saying so.
    ks.unload();
    let (code, prom, _) = status_with(ks.pin_dir(), &["--format", "prometheus"]);
    assert_eq!(code, 3);
    assert!(prom.lines().any(|l| l == "ttm_loaded 0"), "{prom}");
    assert_promtool_ok(&prom);
    // Bad arguments are errors (1), not "degraded" (clap's own code is 2).
    let (code, _, err) = status_with(ks.pin_dir(), &["--format", "xml"]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn status_without_root_reads_configuration_and_counters() {
    let topo = Topology::new();
    let trust = format!("{}/32", topo.client_v4());
    let ks = KernelSide::load(&topo, &["--trust", &trust]);
    let _lb = LbEmulator::start(&topo, &["--client", &claim()]);
    accept_seen_from(&topo, topo.server_cgroup());
    let as_nobody = |args: &[&str]| {
        run_to_end(
            Command::new("setpriv")
                .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"])
                .arg(ttmctl_path())
                .args(["status", "--pin-dir", ks.pin_dir().to_str().unwrap()])
                .args(args),
            Duration::from_secs(30),
        )
    };
    let out = as_nobody(&["--json"]);
    // Whether the links are attached needs root (a link opens read-write
    // only): exit 1 says the state is not known in full.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let st: Value = serde_json::from_str(&out.stdout).expect("JSON even without root");
    assert_eq!(st["state"], "error");
    assert_eq!(st["loaded"], true);
    assert!(out.stderr.contains("status:"), "{out:?}");
    if harness::bpffs::kernel_allows_unprivileged_reads() {
        assert_eq!(counter_of(&st, "found_v4"), 1, "{st:#}");
        assert_eq!(st["trusted"], json!([trust]), "{st:#}");
        assert_eq!(st["formats"], json!(["254/8", "254/20", "253/20"]));
        let errors = st["errors"].to_string();
        assert!(errors.contains("needs root"), "{errors}");
        assert_eq!(st["errors"].as_array().unwrap().len(), 1, "{errors}");
        for p in programs(&st) {
            assert_eq!(p["attached"], Value::Null, "{p}");
            assert_eq!(p["state"], "unknown", "{p}");
        }
        let prom = as_nobody(&["--format", "prometheus"]);
        assert!(
            prom.stdout.contains("\nttm_status_error 1\n")
                && prom
                    .stdout
                    .contains("ttm_events_total{event=\"found_v4\"} 1"),
            "{prom:?}"
        );
        assert_promtool_ok(&prom.stdout);
    } else {
        // Older kernels refuse bpf(2) to users outright: say so.
        assert!(out.stderr.contains("5.19"), "{out:?}");
    }
}

#[test]
fn status_warns_when_options_are_trusted_from_every_source() {
    let topo = Topology::new();
    let mut ks = KernelSide::load(&topo, &[]);
    let (code, st) = ks.status_exit();
    assert_eq!(code, 0, "a warning is not a failure: {st:#}");
    assert_eq!(st["trust"], "unset");
    assert_eq!(st["trust_enforced"], false);
    let warnings = st["warnings"].to_string();
    assert!(warnings.contains("no --trust"), "{warnings}");
    let (_, text, _) = status_with(ks.pin_dir(), &[]);
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("warning") && l.contains("no --trust")),
        "{text}"
    );
    let (_, prom, _) = status_with(ks.pin_dir(), &["--format", "prometheus"]);
    assert!(prom.lines().any(|l| l == "ttm_trust_warning 1"), "{prom}");

    // --trust any: every source, on purpose: no warning anywhere.
    let out = ks.try_reload(&["--trust", "any"]);
    // (A kernel that lacks an optional feature still gets that warning.)
    assert!(
        out.status.success() && !out.stderr.contains("no --trust"),
        "{out:?}"
    );
    let st = ks.status();
    assert_eq!(st["trust"], "any");
    assert_eq!(st["warnings"], json!([]), "{st:#}");
    let (_, prom, _) = status_with(ks.pin_dir(), &["--format", "prometheus"]);
    assert!(prom.lines().any(|l| l == "ttm_trust_warning 0"), "{prom}");

    let trust = format!("{}/32", topo.client_v4());
    ks.reload(&["--trust", &trust]);
    let st = ks.status();
    assert_eq!(st["trust"], "enforced");
    assert_eq!(st["trust_enforced"], true);
    assert_eq!(st["warnings"], json!([]));

    // And load itself says it on stderr when --trust is missing.
    let out = ks.try_reload(&[]);
    assert!(out.stderr.contains("no --trust"), "{out:?}");
}

/// packaging/ttm-service as ttm.service and ttm-check.service run it,
/// with the ttmctl under test and a ttm.conf of the test's own.
struct Service {
    conf: std::path::PathBuf,
}

impl Service {
    fn new(dir: &Path, conf: &str) -> Service {
        let path = dir.join("ttm.conf");
        fs::write(&path, conf).unwrap();
        Service { conf: path }
    }

    fn run(&self, cmd: &str) -> harness::Finished {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/ttm-service");
        run_to_end(
            Command::new(script)
                .arg(cmd)
                .env("TTM_SERVICE_CONF", &self.conf)
                .env("TTMCTL", ttmctl_path()),
            Duration::from_secs(120),
        )
    }
}

impl Drop for Service {
    /// `ttm-service stop` (a no-op when nothing is loaded): unloads, the
    /// trust list export included, also when the test failed half-way.
    fn drop(&mut self) {
        let _ = self.run("stop");
    }
}

/// A scratch directory, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        let (id, _) = harness::unique_id();
        let p = std::env::temp_dir().join(format!("ttm-ops-{what}-{id}"));
        fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Restart of the service whose own cgroup ttm.conf names: the timer's
/// check sees status degraded, loads again, and the new cgroup is served.
/// Also what the service does with an empty TRUST and with TRUST=any.
#[test]
fn the_service_check_writes_metrics_and_heals_a_restarted_service_cgroup() {
    let topo = Topology::new();
    let app = ChildCgroup::create(topo.server_cgroup(), "app.service");
    let (id, _) = harness::unique_id();
    let pin = harness::bpffs::PinDir::new(&format!("ttm-svc-{id}"));
    let scratch = Scratch::new("svc");
    let textfile = scratch.0.join("node-exporter");
    fs::create_dir(&textfile).unwrap();
    let metrics = textfile.join("ttm.prom");
    let conf = |trust: &str| {
        format!(
            "TRUST=\"{trust}\"\nCGROUP=\"{}\"\nPIN_DIR=\"{}\"\nMETRICS_FILE=\"{}\"\n",
            app.path().display(),
            pin.path().display(),
            metrics.display()
        )
    };

    // Secure by default: no TRUST, no start.
    let svc = Service::new(&scratch.0, &conf(""));
    let out = svc.run("start");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("TRUST is empty"), "{out:?}");
    assert!(!pin.path().exists(), "refused, yet something was pinned");
    // TRUST=any: on purpose, no warning.
    let svc = Service::new(&scratch.0, &conf("any"));
    let out = svc.run("start");
    assert!(out.status.success(), "{out:?}");
    assert!(!out.stderr.contains("no --trust"), "{out:?}");
    assert_eq!(status_exit(pin.path()).1["trust"], "any");

    let lb_prefix = format!("{}/32, {}/128", topo.client_v4(), topo.client_v6());
    let svc = Service::new(&scratch.0, &conf(&lb_prefix));
    let out = svc.run("start");
    assert!(out.status.success(), "{out:?}");
    // The load on a unit's own cgroup is warned about.
    assert!(out.stderr.contains("systemd removes it"), "{out:?}");
    let (code, st) = status_exit(pin.path());
    assert_eq!((code, &st["trust"]), (0, &json!("enforced")), "{st:#}");
    assert_eq!(st["trusted"].as_array().unwrap().len(), 2, "{st:#}");

    let out = svc.run("check");
    assert!(out.status.success(), "{out:?}");
    let prom = fs::read_to_string(&metrics).expect("check wrote the metrics file");
    assert!(prom.lines().any(|l| l == "ttm_degraded 0"), "{prom}");
    assert_promtool_ok(&prom);

    let _lb = LbEmulator::start(&topo, &["--client", &claim()]);
    assert_eq!(
        accept_seen_from(&topo, app.path()),
        json!([CLAIM4, CLAIM_PORT])
    );

    // systemctl restart app: its cgroup is removed and made anew.
    app.recreate();
    assert_eq!(status_exit(pin.path()).0, 2);
    let out = svc.run("check");
    assert!(out.status.success(), "the check did not heal: {out:?}");
    assert!(out.stderr.contains("loading again"), "{out:?}");
    let (code, st) = status_exit(pin.path());
    assert_eq!(code, 0, "{st:#}");
    let prom = fs::read_to_string(&metrics).unwrap();
    assert!(prom.lines().any(|l| l == "ttm_degraded 0"), "{prom}");
    assert_eq!(
        accept_seen_from(&topo, app.path()),
        json!([CLAIM4, CLAIM_PORT])
    );
    // The counters went through the re-attach.
    assert_eq!(counter_of(&st, "found_v4"), 1, "{st:#}");
    assert_eq!(counter_of(&status_exit(pin.path()).1, "found_v4"), 2);

    // Stopped for good: nothing to attach to; the check fails and the
    // metrics say degraded.
    app.remove().unwrap();
    let out = svc.run("check");
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("no such directory"), "{out:?}");
    let prom = fs::read_to_string(&metrics).unwrap();
    assert!(prom.lines().any(|l| l == "ttm_degraded 1"), "{prom}");

    let out = svc.run("stop");
    assert!(out.status.success(), "{out:?}");
    assert!(!pin.path().exists());
    // The metrics file does not go on saying "loaded" once the timer
    // that rewrites it has stopped with ttm.
    let prom = fs::read_to_string(&metrics).unwrap();
    assert!(prom.lines().any(|l| l == "ttm_loaded 0"), "{prom}");
    assert_promtool_ok(&prom);
    let out = svc.run("check");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}
