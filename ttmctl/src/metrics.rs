//! `ttmctl status --format prometheus`: the status as Prometheus text
//! exposition (version 0.0.4), for node_exporter's textfile collector or
//! any scraper. Counters are one family with an `event` label, so
//! counters added to the kernel side appear without a change here.

use std::fmt::Write;

use crate::abi::COUNTERS;
use crate::status::{Attach, Status, TrustMode};

/// A label value as the exposition format wants it: `\`, `"` and newline
/// escaped.
fn label(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", l.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, on: bool) {
        self.family(name, "gauge", help);
        self.sample(name, &[], u8::from(on));
    }
}

pub fn render(st: &Status) -> String {
    let mut o = Out(String::new());
    o.gauge(
        "ttm_loaded",
        "1 if ttm's kernel side is loaded (its pins exist).",
        st.loaded,
    );
    o.gauge(
        "ttm_degraded",
        "1 if a program of the loaded set is not attached to a live cgroup (its cgroup was removed): connections it should serve keep the LB's address.",
        st.degraded(),
    );
    o.gauge(
        "ttm_status_error",
        "1 if ttmctl status could not read all of the state (ttmctl status tells why, e.g. not root).",
        !st.errors.is_empty(),
    );
    let trust = st.config.as_ref().map(|c| c.trust());
    o.gauge(
        "ttm_trust_enforced",
        "1 if TCP options are honoured only from the --trust prefixes.",
        trust == Some(TrustMode::Enforced),
    );
    o.gauge(
        "ttm_trust_warning",
        "1 if loaded without --trust: options are honoured from every source, so a client reaching the server directly can claim any address.",
        trust == Some(TrustMode::Unset),
    );

    let shown: Vec<_> = st
        .programs
        .iter()
        .filter(|p| !matches!(p.attach, Attach::Off | Attach::NotLoaded | Attach::Unknown))
        .collect();
    if !shown.is_empty() {
        o.family(
            "ttm_program_attached",
            "gauge",
            "1 if the program is attached to a live cgroup (label cgroup), 0 if its cgroup was removed or it is detached.",
        );
        for p in &shown {
            let cg = p
                .link
                .as_ref()
                .and_then(|l| l.cgroup.as_ref())
                .map(|c| c.display().to_string())
                .unwrap_or_default();
            o.sample(
                "ttm_program_attached",
                &[
                    ("program", p.name()),
                    ("state", p.attach.name()),
                    ("cgroup", &cg),
                ],
                u8::from(p.attach == Attach::Attached),
            );
        }
    }
    if let Some(counts) = &st.counters {
        o.family(
            "ttm_events_total",
            "counter",
            "Outcomes counted by the eBPF programs since the first load (kept across reloads), by the names ttmctl status prints.",
        );
        for (n, v) in COUNTERS.iter().zip(counts) {
            o.sample("ttm_events_total", &[("event", n)], v);
        }
    }
    let stats: Vec<_> = shown
        .iter()
        .filter_map(|p| {
            let l = p.link.as_ref()?;
            Some((p.name(), l.run_cnt?, l.run_time_ns?))
        })
        .collect();
    if !stats.is_empty() {
        o.family(
            "ttm_program_runs_total",
            "counter",
            "Runs of the program since it was loaded (counted only while kernel.bpf_stats_enabled=1).",
        );
        for (n, runs, _) in &stats {
            o.sample("ttm_program_runs_total", &[("program", n)], runs);
        }
        o.family(
            "ttm_program_run_seconds_total",
            "counter",
            "Time spent in the program since it was loaded (counted only while kernel.bpf_stats_enabled=1).",
        );
        for (n, _, ns) in &stats {
            o.sample(
                "ttm_program_run_seconds_total",
                &[("program", n)],
                *ns as f64 / 1e9,
            );
        }
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(
            label("/sys/fs/cgroup/system.slice"),
            "/sys/fs/cgroup/system.slice"
        );
    }
}
