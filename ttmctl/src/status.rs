//! `ttmctl status`: where the kernel side is attached, how it is
//! configured, and what it has counted.

use anyhow::Result;
use serde_json::{Value, json};
use std::path::Path;

use crate::abi::{self, COUNTERS, TtmConfig, pins};
use crate::objects::ATTACHMENTS;
use crate::{format, pinned};

pub fn collect(dir: &Path) -> Result<Value> {
    if !dir.join(ATTACHMENTS[0].link_pin).exists() {
        return Ok(json!({ "loaded": false, "pin_dir": dir }));
    }
    let config: TtmConfig = pinned::array_value(dir, pins::CONFIG)?;
    let trusted = pinned::trusted(dir, pins::TRUSTED)?;
    let counts = pinned::counters(dir, pins::COUNTERS, COUNTERS.len())?;
    let mut programs = Vec::new();
    let mut cgroup = None;
    for a in ATTACHMENTS {
        let pin = dir.join(a.link_pin);
        if !pin.exists() {
            continue;
        }
        let l = pinned::link(&pin)?;
        cgroup = cgroup.or(l.cgroup.clone());
        programs.push(json!({
            "name": a.program,
            "link": a.link_pin,
            "id": l.prog_id,
            "link_id": l.link_id,
            "cgroup_id": l.cgroup_id,
            "run_cnt": l.run_cnt,
            "run_time_ns": l.run_time_ns,
        }));
    }
    let counters: serde_json::Map<String, Value> = COUNTERS
        .iter()
        .zip(&counts)
        .map(|(n, v)| (n.to_string(), json!(v)))
        .collect();
    Ok(json!({
        "loaded": true,
        "pin_dir": dir,
        "cgroup": cgroup,
        "formats": format::names(config.formats),
        "trusted": trusted.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "trust_enforced": config.flags & abi::CFG_TRUST_ENFORCED != 0,
        "rewrite": config.flags & abi::CFG_REWRITE != 0,
        "defer_accept": config.flags & abi::CFG_DEFER_ACCEPT != 0,
        "peer_map": dir.join(pins::PEERS),
        "counters": counters,
        "programs": programs,
    }))
}

pub fn run(dir: &Path, as_json: bool) -> Result<()> {
    crate::preflight::require_root("status")?;
    crate::bpffs::require_dir(dir)?;
    let v = collect(dir)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if v["loaded"] != json!(true) {
        println!("ttm: not loaded (no pins in {})", dir.display());
        return Ok(());
    }
    let s = |k: &str| v[k].as_str().unwrap_or("?").to_string();
    let list = |k: &str| {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    println!("ttm: loaded");
    println!("  cgroup     {}", s("cgroup"));
    println!("  pins       {}", s("pin_dir"));
    println!("  peer map   {}", s("peer_map"));
    println!("  formats    {}", list("formats"));
    let trusted = list("trusted");
    println!(
        "  trusted    {}",
        if trusted.is_empty() {
            "any source (no --trust)".into()
        } else {
            trusted
        }
    );
    println!(
        "  rewrite    {}",
        if v["rewrite"] == json!(true) {
            "getpeername/accept in-kernel"
        } else {
            "off (getsockopt/map only)"
        }
    );
    println!(
        "  deferred   {}",
        if v["defer_accept"] == json!(true) {
            "claims of dropped third ACKs kept (TCP_DEFER_ACCEPT, full accept queue), \
             Fast Open ACKs read"
        } else {
            "off (--no-defer-accept: those connections see the LB's address)"
        }
    );
    println!("  counters");
    for n in COUNTERS {
        println!("    {:<18} {}", n, v["counters"][n]);
    }
    println!("  programs   (run_cnt/run_time_ns need kernel.bpf_stats_enabled=1)");
    for p in v["programs"].as_array().into_iter().flatten() {
        println!(
            "    {:<18} id {:<6} runs {:<10} ns {}",
            p["name"].as_str().unwrap_or("?"),
            p["id"],
            p["run_cnt"],
            p["run_time_ns"]
        );
    }
    Ok(())
}
