//! `ttmctl doctor`: can ttm run here, and if not, what to do about it.
//! Every check is made for real (a verifier load, not a feature probe:
//! bpftool's probe claims every helper everywhere on some kernels).

use serde_json::{Value, json};
use std::fs;
use std::path::Path;

use crate::{bpffs, cgroup, objects, preflight, programs};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Check {
    name: &'static str,
    level: Level,
    detail: String,
    advice: String,
}

fn check(
    name: &'static str,
    level: Level,
    detail: impl Into<String>,
    advice: impl Into<String>,
) -> Check {
    Check {
        name,
        level,
        detail: detail.into(),
        advice: advice.into(),
    }
}

fn cap_eff() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Known kernel modules that answer SOL_IP/1345 (or patch accept) already.
const VENDOR_MODULES: &[&str] = &["kgwttm", "toa", "vtoa", "ttm", "xgwttm"];

fn checks() -> Vec<Check> {
    let mut out = Vec::new();

    let (maj, min, rel) = preflight::kernel_version();
    out.push(if (maj, min) < preflight::MIN_KERNEL {
        check("kernel", Level::Fail, format!("Linux {rel}"), "ttm needs Linux >= 5.10; use the vendor module with libttm.so's kmod backend")
    } else if (maj, min) < (5, 19) {
        check("kernel", Level::Warn, format!("Linux {rel}"), "unprivileged servers cannot read the peer map before 5.19 while unprivileged_bpf_disabled is set; libttm.so falls back to getsockopt 1345")
    } else {
        check("kernel", Level::Ok, format!("Linux {rel} (>= 5.10; >= 5.19 for unprivileged map reads)"), "")
    });

    out.push(if preflight::kernel_btf() {
        check(
            "btf",
            Level::Ok,
            format!("{} present", preflight::KERNEL_BTF),
            "",
        )
    } else {
        check(
            "btf",
            Level::Warn,
            "no kernel BTF",
            "ttm works without it, except for the connections ttm_deferred serves (see defer-accept)",
        )
    });

    out.push(match cgroup::cgroup2_mount() {
        Ok(p) if p == Path::new("/sys/fs/cgroup") => check(
            "cgroup2",
            Level::Ok,
            format!("mounted at {}", p.display()),
            "",
        ),
        Ok(p) => check(
            "cgroup2",
            Level::Ok,
            format!("mounted at {} (hybrid layout)", p.display()),
            "pass cgroup paths under this mount to --cgroup",
        ),
        Err(e) => check(
            "cgroup2",
            Level::Fail,
            e.to_string(),
            "mount cgroup v2: mount -t cgroup2 none /sys/fs/cgroup",
        ),
    });

    out.push(if bpffs::is_bpffs(Path::new(bpffs::DEFAULT_ROOT)) {
        check("bpffs", Level::Ok, "mounted at /sys/fs/bpf", "")
    } else {
        check(
            "bpffs",
            Level::Warn,
            "not mounted at /sys/fs/bpf",
            "ttmctl load mounts it; or: mount -t bpf bpf /sys/fs/bpf",
        )
    });

    let caps = cap_eff();
    let need = [
        (39, "CAP_BPF"),
        (12, "CAP_NET_ADMIN"),
        (21, "CAP_SYS_ADMIN"),
    ];
    let missing: Vec<_> = need
        .iter()
        .filter(|(b, _)| caps & (1 << b) == 0)
        .map(|(_, n)| *n)
        .collect();
    out.push(if missing.is_empty() {
        check(
            "privileges",
            Level::Ok,
            "CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN",
            "",
        )
    } else {
        check(
            "privileges",
            Level::Fail,
            format!("missing {}", missing.join(", ")),
            "run ttmctl as root",
        )
    });

    let unpriv =
        fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled").unwrap_or_default();
    out.push(check(
        "unprivileged_bpf_disabled",
        Level::Ok,
        format!("= {}", unpriv.trim()),
        "servers need no privilege: getsockopt/getpeername hooks run for everyone, and the peer map is pinned world-readable",
    ));

    let modules = fs::read_to_string("/proc/modules").unwrap_or_default();
    let found: Vec<&str> = modules
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|m| VENDOR_MODULES.contains(m) || m.contains("toa"))
        .collect();
    out.push(if found.is_empty() {
        check("vendor module", Level::Ok, "no TOA/TTM kernel module loaded", "")
    } else {
        check(
            "vendor module",
            Level::Warn,
            format!("loaded: {}", found.join(", ")),
            "it answers getsockopt 1345 too (ttm then leaves its answer alone) and Alibaba's VTOA uses 1345 for another struct; unload it (rmmod) before relying on ttm",
        )
    });

    // The only proof a program runs here is the verifier accepting it.
    out.push(verify_programs());
    out.push(defer_accept_check());
    out
}

fn verify_programs() -> Check {
    if cap_eff() & (1 << 39 | 1 << 21) == 0 {
        return check(
            "verifier",
            Level::Warn,
            "not tried (needs root)",
            "run ttmctl doctor as root",
        );
    }
    if !bpffs::is_bpffs(Path::new(bpffs::DEFAULT_ROOT)) {
        return check(
            "verifier",
            Level::Warn,
            "not tried (no bpffs on /sys/fs/bpf)",
            "mount -t bpf bpf /sys/fs/bpf",
        );
    }
    // The peer map is pinned by name; give it a scratch directory so a
    // check leaves nothing behind (aya would pin it in /sys/fs/bpf).
    let scratch = Path::new(bpffs::DEFAULT_ROOT).join(format!("ttm-doctor-{}", std::process::id()));
    let r = try_verify(&scratch);
    crate::unload::remove_pins(&scratch);
    match r {
        Ok(names) => check(
            "verifier",
            Level::Ok,
            format!("accepted {}", names.join(", ")),
            "",
        ),
        Err(e) => check(
            "verifier",
            Level::Fail,
            format!("{e:#}"),
            "report this with the log above and `uname -r`",
        ),
    }
}

fn try_verify(scratch: &Path) -> anyhow::Result<Vec<&'static str>> {
    fs::create_dir(scratch)?;
    let mut names = Vec::new();
    for (object, progs) in [
        (
            objects::TTM,
            &[
                "ttm_parse",
                "ttm_getsockopt",
                "ttm_getsockopt_compat",
                "ttm_getpeername4",
                "ttm_getpeername6",
            ][..],
        ),
        (objects::TTM_LB, &["ttm_lb"][..]),
        (
            objects::TTM_DETECT,
            &["ttm_detect_ops", "ttm_detect_ack"][..],
        ),
    ] {
        let mut ebpf = programs::open(object, Some(scratch))?;
        for p in progs {
            programs::load(&mut ebpf, p)?;
        }
        names.extend_from_slice(progs);
    }
    Ok(names)
}

/// ttm_deferred is optional: without it (no kernel BTF, or a verifier that
/// refuses it) `ttmctl load` attaches the rest and warns.
fn defer_accept_check() -> Check {
    const NAME: &str = "defer-accept";
    let consequence = "listeners with TCP_DEFER_ACCEPT (httpd's default AcceptFilter, nginx `deferred`, \
        HAProxy `defer-accept`) will see the LB's address; turn it off there (`AcceptFilter http none`). \
        So will connections whose third ACK a full accept queue drops, and TCP Fast Open ones";
    if !preflight::kernel_btf() {
        return check(
            NAME,
            Level::Warn,
            "no kernel BTF: ttm_deferred reads listeners' and handshakes' state through it",
            format!("{consequence}, or boot a kernel built with CONFIG_DEBUG_INFO_BTF"),
        );
    }
    if cap_eff() & (1 << 39 | 1 << 21) == 0 || !bpffs::is_bpffs(Path::new(bpffs::DEFAULT_ROOT)) {
        return check(NAME, Level::Warn, "not tried (needs root and bpffs)", "");
    }
    let scratch =
        Path::new(bpffs::DEFAULT_ROOT).join(format!("ttm-doctor-defer-{}", std::process::id()));
    let r = fs::create_dir(&scratch)
        .map_err(anyhow::Error::from)
        .and_then(|()| programs::open(objects::TTM, Some(&scratch)))
        .and_then(|mut ebpf| programs::load(&mut ebpf, "ttm_deferred"));
    crate::unload::remove_pins(&scratch);
    match r {
        Ok(()) => check(
            NAME,
            Level::Ok,
            "ttm_deferred accepted: TCP_DEFER_ACCEPT listeners, full accept queues and Fast Open are served",
            "",
        ),
        Err(e) => check(NAME, Level::Warn, format!("{e:#}"), consequence),
    }
}

pub fn run(as_json: bool) -> anyhow::Result<()> {
    let checks = checks();
    let failed = checks.iter().any(|c| c.level == Level::Fail);
    if as_json {
        let v: Vec<Value> = checks
            .iter()
            .map(|c| {
                json!({
                    "check": c.name,
                    "status": match c.level { Level::Ok => "ok", Level::Warn => "warn", Level::Fail => "fail" },
                    "detail": c.detail,
                    "advice": c.advice,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "ok": !failed, "checks": v }))?
        );
    } else {
        for c in &checks {
            let tag = match c.level {
                Level::Ok => "ok  ",
                Level::Warn => "warn",
                Level::Fail => "FAIL",
            };
            println!("[{tag}] {:<26} {}", c.name, c.detail);
            if c.level != Level::Ok && !c.advice.is_empty() {
                println!("       {:<26} -> {}", "", c.advice);
            }
        }
    }
    if failed {
        anyhow::bail!("ttm cannot run here until the FAIL lines above are fixed");
    }
    Ok(())
}
