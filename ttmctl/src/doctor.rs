//! `ttmctl doctor`: can ttm run here, and if not, what to do about it.
//! Every check is made for real (a verifier load, not a feature probe:
//! bpftool's probe claims every helper everywhere on some kernels).

use serde_json::{Value, json};
use std::fs;
use std::path::Path;

use crate::features::{self, Feature};
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
    /// The kernel feature this check found missing.
    missing: Option<&'static Feature>,
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
        missing: None,
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
    // What newer kernels add is checked feature by feature below.
    out.push(if (maj, min) < preflight::MIN_KERNEL {
        check(
            "kernel",
            Level::Fail,
            format!("Linux {rel}"),
            "ttm needs Linux >= 5.10; use the vendor module with libttm.so's kmod backend",
        )
    } else {
        check("kernel", Level::Ok, format!("Linux {rel} (>= 5.10)"), "")
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

    let unpriv = fs::read_to_string(preflight::UNPRIVILEGED_BPF_DISABLED).unwrap_or_default();
    out.push(
        if features::unprivileged_read_missing((maj, min), &unpriv) {
            lacking(
                "unprivileged_bpf_disabled",
                features::UNPRIV_READ,
                format!("= {} on Linux {rel}", unpriv.trim()),
            )
        } else {
            check(
                "unprivileged_bpf_disabled",
                Level::Ok,
                format!("= {}", unpriv.trim()),
                "servers need no privilege: getsockopt/getpeername hooks run for everyone, and the peer map is pinned world-readable",
            )
        },
    );

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
    out.push(set_retval_check());
    out.push(defer_accept_check());
    out
}

/// A check that found `f` missing: what it costs, and that ttm runs on.
fn lacking(name: &'static str, f: &'static Feature, detail: String) -> Check {
    Check {
        missing: Some(f),
        ..check(
            name,
            Level::Warn,
            format!("{detail}: {}", f.lacking()),
            format!("ttm runs without it; a kernel >= {} has it", f.since_str()),
        )
    }
}

/// Why no program can be tried here, if so.
fn cannot_verify() -> Option<&'static str> {
    if cap_eff() & (1 << 39 | 1 << 21) == 0 {
        Some("not tried (needs root)")
    } else if !bpffs::is_bpffs(Path::new(bpffs::DEFAULT_ROOT)) {
        Some("not tried (no bpffs on /sys/fs/bpf)")
    } else {
        None
    }
}

/// Runs the verifier on `progs` of `object`. Maps pinned by name get a
/// scratch directory, so a check leaves nothing behind (aya would pin
/// them in /sys/fs/bpf).
fn scratch_load(tag: &str, object: &[u8], progs: &[&str]) -> anyhow::Result<()> {
    let scratch =
        Path::new(bpffs::DEFAULT_ROOT).join(format!("ttm-doctor-{tag}-{}", std::process::id()));
    let r = fs::create_dir(&scratch)
        .map_err(anyhow::Error::from)
        .and_then(|()| programs::open(object, Some(&scratch)))
        .and_then(|mut ebpf| progs.iter().try_for_each(|p| programs::load(&mut ebpf, p)));
    crate::unload::remove_pins(&scratch);
    r
}

/// The programs ttm cannot run without (getsockopt in the variant every
/// kernel >= 5.10 takes; `bpf_set_retval` is a check of its own).
fn verify_programs() -> Check {
    if let Some(why) = cannot_verify() {
        return check(
            "verifier",
            Level::Warn,
            why,
            "run ttmctl doctor as root, with bpffs on /sys/fs/bpf",
        );
    }
    const TTM_PROGS: &[&str] = &[
        "ttm_parse",
        "ttm_getsockopt_compat",
        "ttm_getpeername4",
        "ttm_getpeername6",
    ];
    let r = scratch_load("core", objects::TTM, TTM_PROGS)
        .and_then(|()| scratch_load("lb", objects::TTM_LB, &["ttm_lb"]))
        .and_then(|()| {
            scratch_load(
                "detect",
                objects::TTM_DETECT,
                &["ttm_detect_ops", "ttm_detect_ack"],
            )
        });
    match r {
        Ok(()) => check(
            "verifier",
            Level::Ok,
            format!(
                "accepted {}, ttm_lb, ttm_detect_ops, ttm_detect_ack",
                TTM_PROGS.join(", ")
            ),
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

/// ttm_getsockopt needs bpf_set_retval; without it `load` takes the
/// fallback, and only the 4096 ABI's error returns are lost.
fn set_retval_check() -> Check {
    const NAME: &str = "bpf_set_retval";
    if let Some(why) = cannot_verify() {
        return check(NAME, Level::Warn, why, "");
    }
    let getsockopt = objects::getsockopt().program;
    match scratch_load("retval", objects::TTM, &[getsockopt]) {
        Ok(()) => check(
            NAME,
            Level::Ok,
            format!(
                "{getsockopt} accepted: getsockopt 4096 refuses with EINVAL/ENOTCONN as DPVS's module does"
            ),
            "",
        ),
        Err(e) if features::is_missing_set_retval(&format!("{e:#}")) => {
            lacking(NAME, features::SET_RETVAL, format!("{getsockopt} refused"))
        }
        Err(e) => check(
            NAME,
            Level::Fail,
            format!("{e:#}"),
            "report this with the log above and `uname -r`",
        ),
    }
}

/// ttm_deferred is optional: without it (no kernel BTF, or a verifier that
/// refuses it) `ttmctl load` attaches the rest and warns.
fn defer_accept_check() -> Check {
    const NAME: &str = "defer-accept";
    let remedy = "turn TCP_DEFER_ACCEPT off there (`AcceptFilter http none`), \
        or boot a kernel built with CONFIG_DEBUG_INFO_BTF";
    let warn = |detail: String| Check {
        advice: remedy.into(),
        ..lacking(NAME, features::DEFER_ACCEPT, detail)
    };
    if !preflight::kernel_btf() {
        return warn(
            "no kernel BTF: ttm_deferred reads the listener's TCP_DEFER_ACCEPT through it".into(),
        );
    }
    if let Some(why) = cannot_verify() {
        return check(NAME, Level::Warn, why, "");
    }
    match scratch_load("defer", objects::TTM, &["ttm_deferred"]) {
        Ok(()) => check(
            NAME,
            Level::Ok,
            "ttm_deferred accepted: TCP_DEFER_ACCEPT listeners, full accept queues and Fast Open are served",
            "",
        ),
        Err(e) => warn(format!("ttm_deferred refused: {e:#}")),
    }
}

/// The kernel features `checks` found missing.
fn missing_features(checks: &[Check]) -> Vec<&'static Feature> {
    checks.iter().filter_map(|c| c.missing).collect()
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
            serde_json::to_string_pretty(&json!({
                "ok": !failed,
                "checks": v,
                "missing": missing_features(&checks).iter().map(|f| f.to_json()).collect::<Vec<_>>(),
            }))?
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
        let missing = missing_features(&checks);
        if !missing.is_empty() {
            let names: Vec<_> = missing
                .iter()
                .map(|f| format!("{} (Linux >= {})", f.name, f.since_str()))
                .collect();
            println!("this kernel lacks: {}", names.join(", "));
        }
    }
    if failed {
        anyhow::bail!("ttm cannot run here until the FAIL lines above are fixed");
    }
    Ok(())
}
