//! The report of `ttmctl detect`: one JSON value (`--json`, stable field
//! names) from which the text table is printed, ending with the
//! `--format` and `--trust` arguments to load ttm with.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use super::decode;
use super::tally::{Row, SOURCES_MAX, Seen, Tally};
use super::watch::{Counts, Watched, Where};
use crate::escape;
use crate::format::FORMATS;

pub const SCHEMA: u32 = 1;

/// The network a source is grouped into, and suggested for --trust in:
/// an LB sends from a pool of addresses, of which a short watch may see
/// only some.
fn network(a: IpAddr) -> String {
    match a {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
    }
}

fn prefixes(sources: &BTreeMap<IpAddr, u64>) -> Vec<Value> {
    let mut by_net: BTreeMap<(bool, String), (u64, usize)> = BTreeMap::new();
    for (a, n) in sources {
        let e = by_net.entry((a.is_ipv6(), network(*a))).or_default();
        e.0 += n;
        e.1 += 1;
    }
    let mut v: Vec<_> = by_net.into_iter().collect();
    v.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
    v.into_iter()
        .map(|((_, p), (packets, addrs))| json!({"prefix": p, "packets": packets, "addresses": addrs}))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One row as JSON, with `meaning`: what the option is, in a sentence.
fn row_json(w: Where, seen: Seen, r: &Row) -> Value {
    let (option, kind, len) = match seen {
        Seen::Option { kind, len } => (format!("{kind}/{len}"), json!(kind), json!(len)),
        Seen::Malformed { kind, len } => (
            format!("{kind}/{}", len.map_or("-".into(), |l| l.to_string())),
            json!(kind),
            json!(len),
        ),
        Seen::Truncated => ("truncated".into(), Value::Null, Value::Null),
        Seen::NoClientOption => ("none".into(), Value::Null, Value::Null),
    };
    let claims: Vec<String> = r.claims.iter().map(ToString::to_string).collect();
    let mut format = Value::Null;
    let mut layout = Value::Null;
    let meaning = match seen {
        Seen::Option { kind, len } => {
            if let Some(name) = decode::standard_name(kind) {
                format!("{name} (standard)")
            } else if let Some((f, who)) = decode::known_format(kind, len) {
                format = json!(f);
                let mut m = format!("ttm format {f} [{who}]");
                if !claims.is_empty() {
                    m.push_str(&format!(": claims {}", claims.join(", ")));
                }
                if r.bad_claims > 0 {
                    m.push_str(&format!(
                        "; {} claim no client one can have (port 0 or no address)",
                        r.bad_claims
                    ));
                }
                m
            } else {
                let guess = r.samples.first().and_then(|s| decode::guess_layout(s));
                match guess {
                    Some((l, _)) => {
                        layout = json!(l);
                        format!(
                            "not a format ttm parses; its bytes look like {l}: {}",
                            claims.join(", ")
                        )
                    }
                    None => "not a format ttm parses".into(),
                }
            }
        }
        Seen::Malformed { len: None, .. } => {
            "malformed: a kind with no length byte ends the options (ttm stops here)".into()
        }
        Seen::Malformed { len: Some(l), .. } if l < 2 => {
            format!("malformed: length byte {l} (ttm stops here)")
        }
        Seen::Malformed { len: Some(l), .. } => {
            format!("malformed: length {l} runs past the options' end (ttm stops here)")
        }
        Seen::Truncated => "the header declares options past the end of the packet".into(),
        Seen::NoClientOption => "no client option (direct clients, LB health checks?)".into(),
    };
    json!({
        "packet": w.name(),
        "option": option,
        "kind": kind,
        "len": len,
        "format": format,
        "meaning": meaning,
        "packets": r.packets,
        "sources": r.sources.iter().map(|(a, n)| json!({"addr": a.to_string(), "packets": n})).collect::<Vec<_>>(),
        "other_sources_packets": r.other_sources,
        "prefixes": prefixes(&r.sources),
        "ports": r.ports,
        "samples": r.samples.iter().map(|s| hex(s)).collect::<Vec<_>>(),
        "claims": claims,
        "valid_claims": r.valid_claims,
        "bad_claims": r.bad_claims,
        "layout": layout,
    })
}

/// The --format and --trust arguments, and what else to tell.
fn suggest(t: &Tally, c: &Counts) -> Value {
    let mut formats = Vec::new();
    let mut trusted: BTreeMap<(bool, String), ()> = BTreeMap::new();
    let mut capped = false;
    let mut unsupported = Vec::new();
    let mut lb_sources: BTreeMap<IpAddr, ()> = BTreeMap::new();
    for ((_, seen), r) in &t.rows {
        let Seen::Option { kind, len } = *seen else {
            continue;
        };
        if decode::standard_name(kind).is_some() {
            continue;
        }
        match decode::known_format(kind, len) {
            Some((f, _)) if r.valid_claims > 0 => {
                if !formats.contains(&f) {
                    formats.push(f);
                }
                for a in r.sources.keys() {
                    trusted.insert((a.is_ipv6(), network(*a)), ());
                    lb_sources.insert(*a, ());
                }
                capped |= r.other_sources > 0;
            }
            Some(_) => {}
            None => {
                let f = format!("{kind}/{len}");
                if !unsupported.contains(&f) {
                    unsupported.push(f);
                }
            }
        }
    }
    // In the order of `--help` (FORMATS), which is also load's.
    formats.sort_by_key(|f| {
        FORMATS
            .iter()
            .position(|(k, l, _, _)| format!("{k}/{l}") == *f)
    });
    let trust: Vec<String> = trusted.into_keys().map(|(_, p)| p).collect();

    let mut notes = Vec::new();
    let count = |w: Where, f: &dyn Fn(&Seen, &Row) -> bool| -> u64 {
        t.rows
            .iter()
            .filter(|((rw, s), r)| *rw == w && f(s, r))
            .map(|(_, r)| r.packets)
            .sum()
    };
    let known = |s: &Seen, r: &Row| {
        matches!(s, Seen::Option { kind, len } if decode::known_format(*kind, *len).is_some())
            && r.valid_claims > 0
    };
    if c.handshakes == 0 {
        notes.push(
            "no handshake completed: is the server running in this cgroup, and is traffic \
             reaching it through the LB?"
                .to_string(),
        );
    }
    if count(Where::Handshake, &known) == 0 && count(Where::ToListener, &known) > 0 {
        notes.push(
            "the client option arrives only on ACKs to the listener: it defers accept \
             (TCP_DEFER_ACCEPT: httpd, nginx `deferred`, HAProxy `defer-accept`); ttm serves \
             such listeners with ttm_deferred, so do not load with --no-defer-accept \
             (it needs kernel BTF: see `ttmctl doctor`)"
                .to_string(),
        );
    }
    if let Some(none) = t.rows.get(&(Where::Handshake, Seen::NoClientOption)) {
        let from_lb: u64 = none
            .sources
            .iter()
            .filter(|(a, _)| lb_sources.contains_key(a))
            .map(|(_, n)| n)
            .sum();
        if from_lb > 0 {
            notes.push(format!(
                "{from_lb} handshakes from the same sources carried no client option: LB \
                 health checks, or connections the LB does not tag; ttm leaves those alone"
            ));
        }
    }
    for f in &unsupported {
        notes.push(format!(
            "option {f} is not a format ttm parses, and no --format reads it; if it is your \
             LB's, report it with the samples of `ttmctl detect --json`"
        ));
    }
    if c.lost > 0 {
        notes.push(format!(
            "{} packets were not recorded (ring buffer full): the counts above are lower \
             bounds",
            c.lost
        ));
    }
    if !trust.is_empty() {
        notes.push(format!(
            "--trust lists the /24 (IPv4) and /64 (IPv6) networks of the sources that sent \
             {}; check them against the LB's documented source range{}",
            if formats.len() == 1 { "it" } else { "them" },
            if capped {
                " (more sources were seen than are listed)"
            } else {
                ""
            }
        ));
    }
    let mut args = Vec::new();
    for f in &formats {
        args.extend(["--format".to_string(), f.clone()]);
    }
    if !trust.is_empty() {
        args.extend(["--trust".to_string(), trust.join(",")]);
    }
    json!({
        "formats": formats,
        "trust": trust,
        "args": args,
        "unsupported": unsupported,
        "notes": notes,
    })
}

pub fn build(cgroup: &Path, w: &Watched, t: &Tally) -> Value {
    let mut rows: Vec<(&(Where, Seen), &Row)> = t.rows.iter().collect();
    // Per kind of packet: what may carry a client first, most seen first.
    let key = |((w, seen), r): &(&(Where, Seen), &Row)| {
        let standard =
            matches!(seen, Seen::Option { kind, .. } if decode::standard_name(*kind).is_some());
        (*w, standard, std::cmp::Reverse(r.packets), *seen)
    };
    rows.sort_by_key(key);
    json!({
        "schema": SCHEMA,
        "cgroup": escape::path(cgroup),
        "seconds": (w.elapsed.as_millis() as f64) / 1000.0,
        "stopped_by": w.stop.name(),
        "handshakes": w.counts.handshakes,
        "to_listener": w.counts.to_listener,
        "no_packet": w.counts.no_packet,
        "lost": w.counts.lost,
        "sources_max": SOURCES_MAX,
        "options": rows.iter().map(|((wh, seen), r)| row_json(*wh, *seen, r)).collect::<Vec<_>>(),
        "suggest": suggest(t, &w.counts),
    })
}

fn sources_column(row: &Value) -> String {
    let p = row["prefixes"].as_array().cloned().unwrap_or_default();
    let mut parts: Vec<String> = p
        .iter()
        .take(2)
        .map(|x| {
            let n = x["addresses"].as_u64().unwrap_or(0);
            format!(
                "{} ({} addr{})",
                x["prefix"].as_str().unwrap_or("?"),
                n,
                if n == 1 { "" } else { "s" }
            )
        })
        .collect();
    if p.len() > 2 {
        parts.push(format!("+{} more", p.len() - 2));
    }
    if row["other_sources_packets"].as_u64().unwrap_or(0) > 0 {
        parts.push("+more".into());
    }
    parts.join(", ")
}

pub fn text(v: &Value) -> String {
    let mut out = String::new();
    let stopped = match v["stopped_by"].as_str() {
        Some("handshakes") => "the handshake limit reached".to_string(),
        Some("signal") => "stopped by a signal".into(),
        Some("cgroup_removed") => "the cgroup was removed".into(),
        _ => "the time limit reached".into(),
    };
    out.push_str(&format!(
        "ttm detect: {}: {} handshakes, {} ACKs to listeners in {:.1} s ({stopped})\n\n",
        v["cgroup"].as_str().unwrap_or("?"),
        v["handshakes"],
        v["to_listener"],
        v["seconds"].as_f64().unwrap_or(0.0),
    ));
    out.push_str(&format!(
        "{:<12} {:<10} {:>8}  {:<28} {}\n",
        "PACKET", "OPTION", "PACKETS", "SOURCES", "MEANING"
    ));
    for r in v["options"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<12} {:<10} {:>8}  {:<28} {}\n",
            r["packet"].as_str().unwrap_or("?"),
            r["option"].as_str().unwrap_or("?"),
            r["packets"].as_u64().unwrap_or(0),
            sources_column(r),
            r["meaning"].as_str().unwrap_or("")
        ));
        let samples: Vec<&str> = r["samples"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if r["format"].is_null() && !samples.is_empty() {
            out.push_str(&format!("{:>34}bytes: {}\n", "", samples.join(" ")));
        }
    }
    let s = &v["suggest"];
    let notes: Vec<&str> = s["notes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            out.push_str(&format!("- {n}\n"));
        }
    }
    let args: Vec<&str> = s["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    out.push('\n');
    if s["formats"].as_array().is_some_and(|f| !f.is_empty()) {
        out.push_str(&format!("load with: ttmctl load {}\n", args.join(" ")));
    } else {
        out.push_str("load with: no option in a format ttm parses was seen (see above)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::watch::{Event, Stop};
    use std::time::Duration;

    fn event(src: &str, where_: Where, opts: &[u8]) -> Event {
        let a: IpAddr = src.parse().unwrap();
        Event {
            src: match a {
                IpAddr::V4(v) => v.to_ipv6_mapped(),
                IpAddr::V6(v) => v,
            },
            local_port: 8080,
            where_,
            optlen: opts.len(),
            opts: opts.to_vec(),
        }
    }

    fn watched(handshakes: u64) -> Watched {
        Watched {
            counts: Counts {
                handshakes,
                to_listener: handshakes,
                no_packet: 0,
                lost: 0,
            },
            stop: Stop::Handshakes,
            elapsed: Duration::from_millis(1500),
        }
    }

    #[test]
    fn suggests_the_formats_and_networks_seen() {
        let mut t = Tally::default();
        let toa4 = [0xfe, 8, 0x10, 0x92, 203, 0, 113, 7];
        let mut toa6 = vec![0xfd, 20, 0x10, 0x92, 0x20, 0x01, 0x0d, 0xb8];
        toa6.resize(20, 0);
        toa6[19] = 7;
        t.add(&event("198.18.7.2", Where::Handshake, &toa4));
        t.add(&event("198.18.7.3", Where::Handshake, &toa4));
        t.add(&event("fd00:7474:7::2", Where::Handshake, &toa6));
        t.add(&event("198.18.7.2", Where::Handshake, &[]));
        let v = build(Path::new("/sys/fs/cgroup/x"), &watched(4), &t);
        let s = &v["suggest"];
        assert_eq!(s["formats"], json!(["254/8", "253/20"]));
        assert_eq!(s["trust"], json!(["198.18.7.0/24", "fd00:7474:7::/64"]));
        assert_eq!(
            s["args"],
            json!([
                "--format",
                "254/8",
                "--format",
                "253/20",
                "--trust",
                "198.18.7.0/24,fd00:7474:7::/64"
            ])
        );
        // What it suggests, --trust takes.
        let list = ttm_cidr::parse_list(s["args"][5].as_str().unwrap()).unwrap();
        assert_eq!(list.len(), 2);
        let notes = s["notes"].to_string();
        assert!(
            notes.contains("1 handshakes from the same sources carried no client option"),
            "{notes}"
        );
        let text = text(&v);
        assert!(text.ends_with("load with: ttmctl load --format 254/8 --format 253/20 --trust 198.18.7.0/24,fd00:7474:7::/64\n"), "{text}");
        assert!(text.contains("203.0.113.7:4242"), "{text}");
    }

    #[test]
    fn names_an_unknown_option_and_suggests_no_format() {
        let mut t = Tally::default();
        let mut peer = vec![0xfc, 22, 2, 0, 0x10, 0x92, 203, 0, 113, 7];
        peer.resize(22, 0);
        t.add(&event("198.18.7.2", Where::Handshake, &peer));
        let v = build(Path::new("/x"), &watched(1), &t);
        assert_eq!(v["suggest"]["formats"], json!([]));
        assert_eq!(v["suggest"]["args"], json!([]));
        assert_eq!(v["suggest"]["unsupported"], json!(["252/22"]));
        let row = &v["options"][0];
        assert_eq!(row["option"], "252/22");
        assert_eq!(row["format"], Value::Null);
        assert_eq!(row["samples"], json!([hex(&peer)]));
        assert!(row["layout"].as_str().unwrap().contains("ttm_peer"));
        let text = text(&v);
        assert!(text.contains("not a format ttm parses"), "{text}");
        assert!(
            text.contains("no option in a format ttm parses was seen"),
            "{text}"
        );
    }

    #[test]
    fn tells_when_the_option_only_reaches_the_listener() {
        let mut t = Tally::default();
        t.add(&event(
            "198.18.7.2",
            Where::ToListener,
            &[0xfe, 8, 0x10, 0x92, 203, 0, 113, 7],
        ));
        t.add(&event("198.18.7.2", Where::Handshake, &[]));
        let v = build(Path::new("/x"), &watched(1), &t);
        assert!(
            v["suggest"]["notes"]
                .to_string()
                .contains("TCP_DEFER_ACCEPT")
        );
        assert_eq!(v["suggest"]["formats"], json!(["254/8"]));
        let v = build(Path::new("/x"), &watched(0), &Tally::default());
        assert!(
            v["suggest"]["notes"]
                .to_string()
                .contains("no handshake completed")
        );
    }
}
