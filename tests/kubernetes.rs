//! The Kubernetes manifests in packaging/kubernetes/, without a cluster:
//! they parse and carry what docs/kubernetes.md relies on (Pod Security
//! label, no service account token, no unload when a pod stops, status as
//! the readiness probe, the textfile hostPath), and their container
//! scripts run here as a kubelet would run them: with a stand-in ttmctl
//! (the command lines, metrics, a re-load when status says degraded), and
//! with the real ttmctl on a test cgroup and pin directory: a rolling
//! update (pods started and stopped in both orders) under a connection
//! loop leaves no connection without its client, and the uninstall
//! DaemonSet leaves nothing attached or pinned, nor the node's metrics
//! file. Needs root.

mod harness;

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use harness::binaries::ttmctl_path;
use harness::bpffs::{PinDir, assert_nothing_left, attached_names};
use harness::{LbEmulator, PYTHON, Server, Topology, echo_server, run_client, run_to_end};
use serde_json::{Value, json};

const CLAIM4: &str = "203.0.113.7";

fn manifest(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging/kubernetes")
        .join(name);
    let script = "import json, sys, yaml\n\
                  print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))";
    let out = run_to_end(
        Command::new(PYTHON).args(["-c", script]).arg(&path),
        Duration::from_secs(30),
    );
    let text = out.expect_success(&format!("parse {name}"));
    serde_json::from_str(text.trim()).expect("JSON")
}

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let (id, _) = harness::unique_id();
        let p = std::env::temp_dir().join(format!("ttm-k8s-{what}-{id}"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The first document of `kind` (and `name`, if given).
fn doc<'a>(docs: &'a [Value], kind: &str, name: Option<&str>) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && name.is_none_or(|n| d["metadata"]["name"] == n))
        .unwrap_or_else(|| panic!("no {kind} {name:?}"))
}

/// The `sh -c` script of a pod spec's first container.
fn container_script(pod: &Value) -> String {
    let cmd: Vec<&str> = pod["containers"][0]["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(&cmd[..2], ["/bin/sh", "-c"], "{cmd:?}");
    cmd[2].to_owned()
}

#[test]
fn manifests_carry_what_the_docs_rely_on() {
    let docs = manifest("daemonset.yaml");
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Namespace", "ConfigMap", "DaemonSet"]);
    let labels = &doc(&docs, "Namespace", Some("ttm"))["metadata"]["labels"];
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "privileged");
    let ds = doc(&docs, "DaemonSet", Some("ttm"));
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(pod["hostPID"].is_null(), "hostPID is not needed");
    assert!(pod["hostNetwork"].is_null(), "hostNetwork is not needed");
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["privileged"], true);
    // A stopping pod must not unload: the next pod replaces in place.
    assert!(
        c["lifecycle"]["preStop"].is_null(),
        "a preStop hook: {}",
        c["lifecycle"]
    );
    assert!(!container_script(pod).contains("ttmctl unload"));
    assert_eq!(ds["spec"]["updateStrategy"]["type"], "RollingUpdate");
    let volumes = pod["volumes"].as_array().unwrap();
    let host_path = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .and_then(|v| v["hostPath"]["path"].as_str())
            .unwrap_or_else(|| panic!("no hostPath volume {name}"))
            .to_owned()
    };
    assert_eq!(host_path("bpffs"), "/sys/fs/bpf");
    assert_eq!(host_path("cgroup2"), "/sys/fs/cgroup");
    assert_eq!(host_path("libttm"), "/var/lib/ttm");
    assert_eq!(host_path("textfile"), "/var/lib/prometheus/node-exporter");
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mount_of = |name: &str| {
        mounts
            .iter()
            .find(|m| m["name"] == name)
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_else(|| panic!("no mount of {name}"))
            .to_owned()
    };
    assert_eq!(mount_of("bpffs"), "/sys/fs/bpf");
    assert_eq!(mount_of("cgroup2"), "/host/cgroup");
    assert_eq!(mount_of("textfile"), "/host/textfile");
    // The readiness probe is status: not ready while degraded or unloaded.
    assert_eq!(
        c["readinessProbe"]["exec"]["command"],
        json!(["ttmctl", "status", "--pin-dir", "/sys/fs/bpf/ttm"])
    );

    let un = manifest("uninstall.yaml");
    let uds = doc(&un, "DaemonSet", Some("ttm-uninstall"));
    assert_eq!(uds["metadata"]["namespace"], "ttm");
    let upod = &uds["spec"]["template"]["spec"];
    assert_eq!(upod["automountServiceAccountToken"], false);
    assert!(container_script(upod).contains("ttmctl unload"));
    let uvolumes = upod["volumes"].as_array().unwrap();
    assert!(
        uvolumes.iter().any(|v| v["name"] == "textfile"
            && v["hostPath"]["path"] == "/var/lib/prometheus/node-exporter"),
        "uninstall.yaml does not mount the textfile directory: {uvolumes:?}"
    );
}

/// The DaemonSet's container script with the ConfigMap's variables and a
/// stand-in ttmctl that records its arguments: it builds the right
/// `ttmctl load`, writes the metrics with status, loads again when status
/// says degraded (exit 2), and exits 0 on SIGTERM.
#[test]
fn daemonset_script_loads_writes_metrics_and_reloads_when_degraded() {
    let docs = manifest("daemonset.yaml");
    let script =
        container_script(&doc(&docs, "DaemonSet", Some("ttm"))["spec"]["template"]["spec"]);
    let config = &doc(&docs, "ConfigMap", Some("ttm-config"))["data"];
    let dir = TempDir::new("stub");
    let log = dir.path().join("calls");
    let stub = dir.path().join("ttmctl");
    std::fs::write(
        &stub,
        // The first status says "degraded" (exit 2): the script must load
        // again.
        format!(
            "#!/bin/sh\necho \"$*\" >> {log}\n\
             if [ \"$1\" = status ] && ! [ -e {log}.once ]; then touch {log}.once; exit 2; fi\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut sh = Command::new("/bin/sh");
    sh.args(["-c", &script])
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
        .env("TRUST", "10.0.0.0/24 2001:db8::/64")
        .env("FORMATS", config["FORMATS"].as_str().unwrap())
        .env("CGROUP", "kubepods.slice")
        .process_group(0);
    let pod = Pod {
        server: Server::interactive("daemonset script", sh),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .count()
        < 3
    {
        assert!(
            std::time::Instant::now() < deadline,
            "script ran no ttmctl load + status + load: {:?}",
            std::fs::read_to_string(&log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    pod.wait_idle();
    pod.stop();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "load --cgroup /host/cgroup/kubepods.slice --pin-dir /sys/fs/bpf/ttm \
         --trust 10.0.0.0/24 2001:db8::/64\n\
         status --pin-dir /sys/fs/bpf/ttm --format prometheus --output /host/textfile/ttm.prom\n\
         load --cgroup /host/cgroup/kubepods.slice --pin-dir /sys/fs/bpf/ttm \
         --trust 10.0.0.0/24 2001:db8::/64\n"
    );
}

/// One pod of a manifest's DaemonSet: its container script run by /bin/sh
/// with the ConfigMap's variables, ttmctl on PATH, in a process group of
/// its own (killed on drop).
struct Pod {
    server: Server,
}

impl Pod {
    fn start(name: &str, script: &str, env: &[(&str, &str)]) -> Pod {
        let bin = ttmctl_path();
        let mut sh = Command::new("/bin/sh");
        sh.args(["-c", script])
            .env_clear()
            .env(
                "PATH",
                format!(
                    "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                    bin.parent().unwrap().display()
                ),
            )
            .envs(env.iter().copied())
            .process_group(0);
        Pod {
            server: Server::interactive(name, sh),
        }
    }

    /// Waits until the script is past its ttmctl commands and idles in
    /// its `sleep` (a process of the pod's group named sleep).
    fn wait_idle(&self) {
        let pgrp = self.server.pid() as i32;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let idle = std::fs::read_dir("/proc")
                .expect("/proc")
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                .any(|stat| {
                    // pid (comm) state ppid pgrp ...
                    let Some((head, rest)) = stat.rsplit_once(") ") else {
                        return false;
                    };
                    let group = rest
                        .split_whitespace()
                        .nth(2)
                        .and_then(|g| g.parse::<i32>().ok());
                    head.ends_with("(sleep") && group == Some(pgrp)
                });
            if idle {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pod script did not reach its sleep; stderr: {}",
                self.server.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, as the kubelet stops a container; the script must exit 0.
    fn stop(self) {
        // SAFETY: kill(2) on the pid of a child this test spawned and has
        // not reaped (Server reaps it on drop).
        let rc = unsafe { libc::kill(self.server.pid() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
        let status = self.server.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "pod script on SIGTERM");
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        // SAFETY: kill(2) of the process group this test created with
        // process_group(0); at worst ESRCH once it is gone.
        unsafe { libc::kill(-(self.server.pid() as i32), libc::SIGKILL) };
    }
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The variables a pod of daemonset.yaml gets, pointed at the test's
/// server cgroup, pin directory and textfile directory: CGROUP_ROOT
/// stands for the node's cgroup2 mount (/host/cgroup in the pod),
/// TEXTFILE_DIR for node_exporter's (/host/textfile), CGROUP is the
/// ConfigMap's.
fn pod_env(topo: &Topology, pin: &PinDir, textfile: &Path) -> Vec<(&'static str, String)> {
    let mount = harness::cgroup::cgroup2_mount();
    let rel = topo
        .server_cgroup()
        .strip_prefix(mount)
        .expect("server cgroup below the cgroup2 mount");
    vec![
        ("CGROUP_ROOT", mount.display().to_string()),
        ("CGROUP", rel.display().to_string()),
        ("PIN_DIR", pin.path().display().to_string()),
        ("TEXTFILE_DIR", textfile.display().to_string()),
        ("TRUST", format!("{}/32", topo.client_v4())),
        ("FORMATS", String::new()),
    ]
}

/// A rolling update of the DaemonSet, both ways Kubernetes orders it
/// (maxSurge: the new pod starts before the old stops; without: the old
/// stops first), while a client connects without pause: every connection
/// gets the claimed client from getsockopt 1345, so no moment passed with
/// nothing loaded. Then the uninstall DaemonSet's script unloads it all.
#[test]
fn rolling_update_misses_no_connection_and_uninstall_unloads() {
    harness::require_root();
    let docs = manifest("daemonset.yaml");
    let script =
        container_script(&doc(&docs, "DaemonSet", Some("ttm"))["spec"]["template"]["spec"]);
    let uninstall = container_script(
        &doc(
            &manifest("uninstall.yaml"),
            "DaemonSet",
            Some("ttm-uninstall"),
        )["spec"]["template"]["spec"],
    );

    let topo = Topology::new();
    let (id, _) = harness::unique_id();
    let pin = PinDir::new(&format!("ttm-k8s-{id}"));
    let textfile = TempDir::new("textfile");
    let metrics = textfile.path().join("ttm.prom");
    let env_owned = pod_env(&topo, &pin, textfile.path());
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _lb = LbEmulator::start(&topo, &["--client", CLAIM4]);
    let map = pin.path().join("ttm_peers");

    let mut pod = Pod::start("ttm pod 0", &script, &env);
    pod.wait_idle();
    // The pod's first status went to the node's textfile directory.
    let prom = std::fs::read_to_string(&metrics).expect("the pod wrote ttm.prom");
    assert!(
        prom.lines().any(|l| l == "ttm_loaded 1") && prom.lines().any(|l| l == "ttm_degraded 0"),
        "{prom}"
    );
    let server = echo_server(
        &topo.server().launch(),
        &["--family", "inet", "--map", map.to_str().unwrap()],
    );
    let launch = topo.client().launch();
    let (dst, port) = (topo.server_v4().to_string(), server.port().to_string());
    let done = AtomicBool::new(false);
    let updates = 4;
    let outs = std::thread::scope(|s| {
        let client = s.spawn(|| {
            let mut outs = Vec::new();
            while outs.is_empty() || !done.load(Ordering::SeqCst) {
                let args = ["--addr", &dst, "--port", &port, "--count", "50"];
                outs.push(run_client(&launch, &args, Duration::from_secs(120)));
            }
            outs
        });
        // Ends the client loop also when an update below panics (the
        // scope would wait for the client forever).
        let _stop = StopOnDrop(&done);
        for i in 1..=updates {
            let name = format!("ttm pod {i}");
            if i % 2 == 1 {
                // maxSurge: 1 - the new pod loads, then the old one stops.
                let next = Pod::start(&name, &script, &env);
                next.wait_idle();
                std::mem::replace(&mut pod, next).stop();
            } else {
                // maxUnavailable: 1 - the old pod stops first.
                let old = std::mem::replace(&mut pod, Pod::start(&name, &script, &env));
                old.stop();
                pod.wait_idle();
            }
            let names = attached_names(topo.server_cgroup());
            assert!(
                names.iter().any(|n| n == "ttm_parse"),
                "after update {i}: {names:?}"
            );
        }
        drop(_stop);
        client.join().expect("client thread")
    });
    let mut recs = Vec::new();
    for out in outs {
        recs.extend(out.json_lines());
        out.expect_success("client.py during the rolling update");
    }
    assert!(recs.len() >= 100, "only {} connections", recs.len());
    for rec in &recs {
        let port = rec["local"][1].as_u64().expect("local port");
        assert_eq!(rec["reply"]["ttm"]["ip"], CLAIM4, "{rec}");
        assert_eq!(rec["reply"]["ttm"]["port"], port, "{rec}");
    }
    server.records(recs.len(), Duration::from_secs(10));
    eprintln!(
        "{} connections over {updates} rolling updates, none without its client",
        recs.len()
    );

    // Deleting the DaemonSet leaves the programs loaded ...
    pod.stop();
    let names = attached_names(topo.server_cgroup());
    assert!(names.iter().any(|n| n == "ttm_parse"), "{names:?}");
    // ... until the uninstall DaemonSet's pod runs, once per node.
    let un = Pod::start("ttm-uninstall pod", &uninstall, &env);
    un.wait_idle();
    assert_nothing_left(topo.server_cgroup(), &[pin.path()]);
    // ... and the node's metrics file, which would go on saying loaded.
    assert!(!metrics.exists(), "uninstall left {}", metrics.display());
    // A second run (another node, or a restart) finds nothing to do.
    un.stop();
    let again = Pod::start("ttm-uninstall pod again", &uninstall, &env);
    again.wait_idle();
    again.stop();
}

/// A buildah working container, removed on drop with its image.
struct Image {
    name: String,
    container: Option<String>,
}

fn buildah(args: &[&str]) -> harness::Finished {
    run_to_end(
        Command::new("buildah")
            .args(args)
            .env("STORAGE_DRIVER", "vfs")
            .env("BUILDAH_ISOLATION", "chroot"),
        Duration::from_secs(300),
    )
}

impl Drop for Image {
    fn drop(&mut self) {
        if let Some(c) = &self.container {
            let _ = buildah(&["rm", c]);
        }
        let _ = buildah(&["rmi", "--force", &self.name]);
    }
}

/// `make image`'s script builds the image from the packages (on a base
/// made by mmdebstrap: no container registry is reachable here), and the
/// image holds what the DaemonSet's pods run: ttmctl, and the library the
/// init container copies to the node, which its script does (run in the
/// image with a directory standing for the node's /var/lib/ttm).
#[test]
fn image_builds_and_runs_the_init_container() {
    harness::require_root();
    let (id, _) = harness::unique_id();
    let mut image = Image {
        name: format!("localhost/ttm-test:{id}"),
        container: None,
    };
    let target = harness::binaries::profile_dir()
        .parent()
        .expect("target dir")
        .to_owned();
    let out = run_to_end(
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/image.sh"))
            .env("BASE", "mmdebstrap")
            .env("IMAGE", &image.name)
            .env("CARGO_TARGET_DIR", &target),
        Duration::from_secs(2400),
    );
    let image_id = out.expect_success("scripts/image.sh");
    assert_eq!(image_id.trim().len(), 64, "image ID: {image_id}");

    let c = buildah(&["from", "--quiet", &image.name]).expect_success("buildah from");
    let c = c.trim().to_owned();
    image.container = Some(c.clone());
    let version =
        buildah(&["run", &c, "--", "ttmctl", "--version"]).expect_success("ttmctl --version");
    assert!(
        version.starts_with(&format!("ttmctl {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );

    let docs = manifest("daemonset.yaml");
    let pod = &doc(&docs, "DaemonSet", Some("ttm"))["spec"]["template"]["spec"];
    let init = &pod["initContainers"][0];
    let script = init["command"][2].as_str().expect("init container script");
    let mount = init["volumeMounts"][0]["mountPath"]
        .as_str()
        .expect("mountPath");
    let node_dir = TempDir::new("node");
    let node = node_dir.path();
    let volume = format!("{}:{mount}", node.display());
    buildah(&["run", "-v", &volume, &c, "--", "/bin/sh", "-c", script])
        .expect_success("the init container's script");
    let copied = node.join("libttm.so.1");
    let meta = std::fs::metadata(&copied).expect("libttm.so.1 copied to the node");
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    let elf = std::fs::read(&copied).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    assert!(
        !node.join(".libttm.so.1.new").exists(),
        "the temporary copy was renamed into place"
    );
}
