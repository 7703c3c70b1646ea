//! `ttmctl status`: whether the kernel side is loaded and each program
//! still attached to a live cgroup, how it is configured and what it has
//! counted, with an exit code in the manner of `systemctl is-active`:
//! 0 ok, 1 error, 2 degraded, 3 not loaded (CONTRACTS.md).
//!
//! Collecting never stops at the first problem: what could be read is
//! reported, what could not is an error in the report (and exit 1), so a
//! reader without root still gets the configuration and the counters.

use anyhow::Result;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::abi::{self, COUNTERS, TtmConfig, pins};
use crate::cli::StatusFormat as Format;
use crate::escape;
use crate::objects::{ATTACHMENTS, Attachment, Part};
use crate::pinned::{self, LinkView};
use crate::{atomic_file, cgroup, features, format, metrics};

/// Version of the JSON document; bumped when a field changes meaning or
/// goes away (new fields do not bump it).
pub const SCHEMA: u32 = 1;

/// The overall verdict, and the exit code that carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Ok,
    Error,
    Degraded,
    NotLoaded,
}

impl State {
    pub fn exit_code(self) -> i32 {
        match self {
            State::Ok => 0,
            State::Error => 1,
            State::Degraded => 2,
            State::NotLoaded => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Error => "error",
            State::Degraded => "degraded",
            State::NotLoaded => "not_loaded",
        }
    }
}

/// What became of one program of the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// Its link is attached to a cgroup that exists.
    Attached,
    /// Attached to a cgroup that was removed (it serves only that dead
    /// cgroup's leftover sockets; a new directory at the same path is
    /// another cgroup).
    CgroupRemoved,
    /// The link holds no cgroup any more: the kernel detached it when the
    /// removed cgroup was freed (or someone detached it).
    Detached,
    /// Configured to run, but its link is not pinned.
    NotPinned,
    /// Not wanted by the configuration (`--no-rewrite`, `--no-defer-accept`).
    Off,
    NotLoaded,
    /// Its link could not be read (see the report's errors).
    Unknown,
}

impl Attach {
    pub fn name(self) -> &'static str {
        match self {
            Attach::Attached => "attached",
            Attach::CgroupRemoved => "cgroup_removed",
            Attach::Detached => "detached",
            Attach::NotPinned => "not_pinned",
            Attach::Off => "off",
            Attach::NotLoaded => "not_loaded",
            Attach::Unknown => "unknown",
        }
    }

    /// Whether this program being in this state makes the set degraded.
    fn is_fault(self) -> bool {
        matches!(
            self,
            Attach::CgroupRemoved | Attach::Detached | Attach::NotPinned
        )
    }
}

pub struct Program {
    pub attachment: &'static Attachment,
    pub attach: Attach,
    pub link: Option<LinkView>,
    /// `load` attached the attachment's fallback (ttm_getsockopt_compat).
    pub fallback_loaded: bool,
}

impl Program {
    /// The program behind the link: the fallback where `load` chose it.
    pub fn name(&self) -> &'static str {
        match self.attachment.fallback {
            Some(f) if self.fallback_loaded => f,
            _ => self.attachment.program,
        }
    }

    /// true/false, or None when it could not be told.
    pub fn attached(&self) -> Option<bool> {
        match self.attach {
            Attach::Attached => Some(true),
            Attach::Unknown => None,
            _ => Some(false),
        }
    }
}

/// How sources are trusted, from the flags `load` wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustMode {
    Enforced,
    /// `--trust any`: on purpose.
    Any,
    /// No `--trust` at all: warned about.
    Unset,
}

pub struct Config {
    pub raw: TtmConfig,
    pub trusted: Vec<String>,
}

impl Config {
    pub fn trust(&self) -> TrustMode {
        if self.raw.flags & abi::CFG_TRUST_ENFORCED != 0 {
            TrustMode::Enforced
        } else if self.raw.flags & abi::CFG_TRUST_ANY != 0 {
            TrustMode::Any
        } else {
            TrustMode::Unset
        }
    }

    fn flag(&self, f: u32) -> bool {
        self.raw.flags & f != 0
    }

    /// Whether the configuration asks for the programs of `part`.
    fn wants(&self, part: Part) -> bool {
        match part {
            Part::Core => true,
            Part::Rewrite => self.flag(abi::CFG_REWRITE),
            Part::DeferAccept => self.flag(abi::CFG_DEFER_ACCEPT),
        }
    }
}

pub struct Status {
    pub pin_dir: PathBuf,
    pub loaded: bool,
    pub config: Option<Config>,
    /// One value per `COUNTERS` name.
    pub counters: Option<Vec<u64>>,
    /// Every program of `ATTACHMENTS`, whether loaded or not.
    pub programs: Vec<Program>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

impl Status {
    pub fn state(&self) -> State {
        if !self.errors.is_empty() {
            State::Error
        } else if !self.loaded {
            State::NotLoaded
        } else if self.programs.iter().any(|p| p.attach.is_fault()) {
            State::Degraded
        } else {
            State::Ok
        }
    }

    /// Whether some program is known to be detached or gone, whatever
    /// else could not be read.
    pub fn degraded(&self) -> bool {
        self.programs.iter().any(|p| p.attach.is_fault())
    }

    /// The cgroup the set serves: that of the first attached program.
    pub fn cgroup(&self) -> Option<&Path> {
        self.programs
            .iter()
            .filter(|p| p.attach == Attach::Attached)
            .find_map(|p| p.link.as_ref()?.cgroup.as_deref())
    }
}

/// Whether `path` exists; Err when it cannot be told (a parent directory
/// the caller may not search: systemd mounts /sys/fs/bpf 0700).
fn exists(path: &Path) -> Result<bool, String> {
    path.try_exists().map_err(|e| {
        format!(
            "cannot look into {}: {e}; a parent directory is not searchable by this user \
             (systemd mounts /sys/fs/bpf with mode 0700); run as root",
            path.parent().unwrap_or(path).display()
        )
    })
}

pub fn collect(dir: &Path) -> Status {
    let mut st = Status {
        pin_dir: dir.to_path_buf(),
        loaded: false,
        config: None,
        counters: None,
        programs: ATTACHMENTS
            .iter()
            .map(|a| Program {
                attachment: a,
                attach: Attach::NotLoaded,
                link: None,
                fallback_loaded: false,
            })
            .collect(),
        warnings: Vec::new(),
        errors: Vec::new(),
    };
    if let Err(e) = crate::bpffs::require_dir(dir) {
        st.errors.push(format!("{e:#}"));
        return st;
    }
    // Loaded: the configuration or any link is pinned. Which links ought
    // to be there is the configuration's to say.
    let mut pinned = Vec::new();
    for name in std::iter::once(pins::CONFIG).chain(ATTACHMENTS.iter().map(|a| a.link_pin)) {
        match exists(&dir.join(name)) {
            Ok(e) => pinned.push(e),
            Err(e) => {
                st.errors.push(e);
                return st;
            }
        }
    }
    st.loaded = pinned.iter().any(|p| *p);
    if !st.loaded {
        return st;
    }

    match read_config(dir) {
        Ok(c) => st.config = Some(c),
        Err(e) => st.errors.push(format!("configuration: {e:#}")),
    }
    match pinned::counters(dir, pins::COUNTERS, COUNTERS.len()) {
        Ok(c) => st.counters = Some(c),
        Err(e) => st.errors.push(format!("counters: {e:#}")),
    }
    let mut link_error = None;
    for (p, is_pinned) in st.programs.iter_mut().zip(&pinned[1..]) {
        p.fallback_loaded = st
            .config
            .as_ref()
            .is_some_and(|c| c.flag(abi::CFG_GETSOCKOPT_COMPAT));
        let wanted = match &st.config {
            Some(c) => c.wants(p.attachment.part),
            // Unknown configuration: a pinned link was wanted.
            None => *is_pinned || p.attachment.part == Part::Core,
        };
        p.attach = match (is_pinned, wanted) {
            (false, true) => Attach::NotPinned,
            (false, false) => Attach::Off,
            (true, _) => match pinned::link(&dir.join(p.attachment.link_pin)) {
                Ok(view) => {
                    let a = if view.cgroup_id == 0 {
                        Attach::Detached
                    } else if view.cgroup.is_none() {
                        Attach::CgroupRemoved
                    } else {
                        Attach::Attached
                    };
                    p.link = Some(view);
                    a
                }
                Err(e) => {
                    link_error.get_or_insert(e);
                    Attach::Unknown
                }
            },
        };
    }
    if let Some(e) = link_error {
        st.errors
            .push(format!("whether the programs are attached: {e:#}"));
    }

    if st
        .config
        .as_ref()
        .is_some_and(|c| c.trust() == TrustMode::Unset)
    {
        st.warnings.push(crate::trust::UNSET_WARNING.into());
    }
    if let Some(unit) = st.cgroup().and_then(cgroup::removed_on_restart) {
        st.warnings.push(format!(
            "attached to the cgroup of {unit}, which systemd removes when it stops or restarts \
             (and the programs with it); attach to a parent that stays, such as its slice"
        ));
    }
    st
}

fn read_config(dir: &Path) -> Result<Config> {
    let raw: TtmConfig = pinned::array_value(dir, pins::CONFIG)?;
    let trusted = pinned::trusted(dir, pins::TRUSTED)?;
    Ok(Config {
        raw,
        trusted: trusted.iter().map(ToString::to_string).collect(),
    })
}

/// The running kernel, and what `load` found it lacks and what that costs.
fn kernel_json(c: Option<&Config>) -> Value {
    let missing: Vec<Value> = c
        .map(|c| {
            features::missing(c.raw.missing)
                .map(|f| f.to_json())
                .collect()
        })
        .unwrap_or_default();
    json!({
        "release": crate::preflight::kernel_version().2,
        "missing": missing,
    })
}

/// The JSON document (schema 1): one shape whether loaded or not.
pub fn to_json(st: &Status) -> Value {
    let state = st.state();
    let c = st.config.as_ref();
    let counters: serde_json::Map<String, Value> = COUNTERS
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let v = st.counters.as_ref().map(|c| c[i]);
            (n.to_string(), json!(v))
        })
        .collect();
    let programs: Vec<Value> = st
        .programs
        .iter()
        .map(|p| {
            let l = p.link.as_ref();
            json!({
                "name": p.name(),
                "link": p.attachment.link_pin,
                "state": p.attach.name(),
                "attached": p.attached(),
                "cgroup": l.and_then(|l| l.cgroup.as_ref()),
                "cgroup_id": l.map(|l| l.cgroup_id),
                "id": l.map(|l| l.prog_id),
                "link_id": l.map(|l| l.link_id),
                "run_cnt": l.and_then(|l| l.run_cnt),
                "run_time_ns": l.and_then(|l| l.run_time_ns),
            })
        })
        .collect();
    json!({
        "schema": SCHEMA,
        "state": state.name(),
        "loaded": st.loaded,
        "degraded": st.degraded(),
        "pin_dir": st.pin_dir,
        "cgroup": st.cgroup(),
        "peer_map": st.loaded.then(|| st.pin_dir.join(pins::PEERS)),
        "formats": c.map(|c| format::names(c.raw.formats)).unwrap_or_default(),
        "trust": c.map(|c| match c.trust() {
            TrustMode::Enforced => "enforced",
            TrustMode::Any => "any",
            TrustMode::Unset => "unset",
        }),
        "trusted": c.map(|c| c.trusted.clone()).unwrap_or_default(),
        "trust_enforced": c.is_some_and(|c| c.trust() == TrustMode::Enforced),
        "rewrite": c.map(|c| c.flag(abi::CFG_REWRITE)),
        "defer_accept": c.map(|c| c.flag(abi::CFG_DEFER_ACCEPT)),
        "getsockopt_compat": c.map(|c| c.flag(abi::CFG_GETSOCKOPT_COMPAT)),
        "kernel": kernel_json(c),
        "counters": counters,
        "programs": programs,
        "warnings": st.warnings,
        "errors": st.errors,
    })
}

/// The human-readable report.
pub fn to_text(st: &Status) -> String {
    let mut o = String::new();
    let mut line = |s: String| {
        o.push_str(&s);
        o.push('\n');
    };
    let state = st.state();
    let faults: Vec<&Program> = st.programs.iter().filter(|p| p.attach.is_fault()).collect();
    match state {
        State::NotLoaded => {
            line(format!(
                "ttm: not loaded (no pins in {})",
                escape::path(&st.pin_dir)
            ));
            return o;
        }
        State::Ok => line("ttm: loaded".into()),
        State::Degraded => line(format!(
            "ttm: DEGRADED: {} of the programs not attached to a live cgroup; `ttmctl load` \
             again attaches them",
            faults.len()
        )),
        State::Error if st.loaded => {
            line("ttm: loaded, but its state could not be read in full (see errors)".into())
        }
        State::Error => line("ttm: state unknown (see errors)".into()),
    }
    for e in &st.errors {
        line(format!("  error      {}", escape::value(e)));
    }
    for w in &st.warnings {
        line(format!("  warning    {}", escape::value(w)));
    }
    if !st.loaded {
        return o;
    }
    let dash = "?".to_string();
    line(format!(
        "  cgroup     {}",
        st.cgroup().map(escape::path).unwrap_or(dash.clone())
    ));
    line(format!("  pins       {}", escape::path(&st.pin_dir)));
    line(format!(
        "  peer map   {}",
        escape::path(&st.pin_dir.join(pins::PEERS))
    ));
    if let Some(c) = &st.config {
        line(format!(
            "  formats    {}",
            format::names(c.raw.formats).join(" ")
        ));
        line(format!(
            "  trusted    {}",
            match c.trust() {
                TrustMode::Enforced => c.trusted.join(" "),
                TrustMode::Any => "any source (--trust any)".into(),
                TrustMode::Unset => "any source (no --trust: see the warning)".into(),
            }
        ));
        line(format!(
            "  rewrite    {}",
            if c.flag(abi::CFG_REWRITE) {
                "getpeername/accept in-kernel"
            } else {
                "off (getsockopt/map only)"
            }
        ));
        line(format!(
            "  deferred   {}",
            if c.flag(abi::CFG_DEFER_ACCEPT) {
                "claims of dropped third ACKs kept (TCP_DEFER_ACCEPT, full accept queue), \
                 Fast Open ACKs read"
            } else {
                "off (--no-defer-accept: those connections see the LB's address)"
            }
        ));
        if c.flag(abi::CFG_GETSOCKOPT_COMPAT) {
            line(
                "  getsockopt ttm_getsockopt_compat: 4096 leaves the kernel's ENOPROTOOPT where \
                 it would refuse"
                    .into(),
            );
        }
        for f in features::missing(c.raw.missing) {
            line(format!(
                "  kernel     lacks {} (Linux >= {}): {}",
                f.name,
                f.since_str(),
                f.without
            ));
        }
    }
    if let Some(counts) = &st.counters {
        line("  counters".into());
        for (n, v) in COUNTERS.iter().zip(counts) {
            line(format!("    {n:<18} {v}"));
        }
    }
    line("  programs   (runs/ns need kernel.bpf_stats_enabled=1)".into());
    for p in &st.programs {
        let what = match p.attach {
            Attach::Attached => format!(
                "attached to {}",
                p.link
                    .as_ref()
                    .and_then(|l| l.cgroup.as_deref())
                    .map(escape::path)
                    .unwrap_or(dash.clone())
            ),
            Attach::CgroupRemoved => format!(
                "NOT SERVING: cgroup removed (id {})",
                p.link.as_ref().map_or(0, |l| l.cgroup_id)
            ),
            Attach::Detached => "NOT SERVING: detached (its cgroup was removed)".into(),
            Attach::NotPinned => "NOT SERVING: link not pinned".into(),
            Attach::Off => "off".into(),
            Attach::NotLoaded => "not loaded".into(),
            Attach::Unknown => "unknown (see errors)".into(),
        };
        let stats = match p.link.as_ref().and_then(|l| l.run_cnt.zip(l.run_time_ns)) {
            Some((runs, ns)) => format!("  runs {runs} ns {ns}"),
            None => String::new(),
        };
        line(format!("    {:<18} {what}{stats}", p.name()));
    }
    o
}

/// Renders the report; with `output`, writes it there atomically.
/// Returns the exit code.
pub fn run(dir: &Path, fmt: Format, output: Option<&Path>) -> Result<i32> {
    let st = collect(dir);
    let text = match fmt {
        Format::Text => to_text(&st),
        Format::Json => serde_json::to_string_pretty(&to_json(&st))? + "\n",
        Format::Prometheus => metrics::render(&st),
    };
    // The reasons for exit 1 also go to stderr, whatever the format.
    for e in &st.errors {
        eprintln!("ttmctl: status: {}", escape::message(e));
    }
    match output {
        Some(path) => atomic_file::write(path, text.as_bytes(), 0o644)?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(st.state().exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(attach: &[Attach], errors: usize, loaded: bool) -> Status {
        Status {
            pin_dir: "/sys/fs/bpf/ttm".into(),
            loaded,
            config: None,
            counters: None,
            programs: ATTACHMENTS
                .iter()
                .zip(attach)
                .map(|(a, s)| Program {
                    attachment: a,
                    attach: *s,
                    link: None,
                    fallback_loaded: false,
                })
                .collect(),
            warnings: Vec::new(),
            errors: vec!["x".into(); errors],
        }
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        use Attach::*;
        let ok = status(&[Attached, Attached, Off, Off, Attached], 0, true);
        assert_eq!(ok.state().exit_code(), 0);
        let gone = status(&[CgroupRemoved, Attached, Off, Off, Attached], 0, true);
        assert_eq!(gone.state().exit_code(), 2);
        let detached = status(&[Attached, Attached, Detached, Attached, Attached], 0, true);
        assert_eq!(detached.state().exit_code(), 2);
        let missing = status(&[Attached, NotPinned, Off, Off, Off], 0, true);
        assert_eq!(missing.state().exit_code(), 2);
        let none = status(&[NotLoaded; 5], 0, false);
        assert_eq!(none.state().exit_code(), 3);
        let unreadable = status(&[Unknown; 5], 1, true);
        assert_eq!(unreadable.state().exit_code(), 1);
    }

    #[test]
    fn json_has_one_shape_loaded_or_not() {
        use Attach::*;
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let a = to_json(&status(&[NotLoaded; 5], 0, false));
        let b = to_json(&status(&[Attached; 5], 0, true));
        assert_eq!(keys(&a), keys(&b));
        assert_eq!(a["schema"], json!(SCHEMA));
        assert_eq!(a["state"], json!("not_loaded"));
        assert_eq!(a["counters"].as_object().unwrap().len(), COUNTERS.len());
        assert_eq!(a["programs"].as_array().unwrap().len(), ATTACHMENTS.len());
        assert_eq!(keys(&a["programs"][0]), keys(&b["programs"][0]));
    }
}
