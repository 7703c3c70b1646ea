//! The environment, read once by the load-time constructor. A bad value
//! yields one warning naming the variable and the default used instead;
//! parsing never fails and never panics.
//!
//! | variable | values | default |
//! |---|---|---|
//! | TTM_DISABLE | 1/true/yes/on, 0/false/no/off | off (library active) |
//! | TTM_PROGRAMS | comma list of program names | every program |
//! | TTM_TRUSTED | CIDRs or addresses, comma and/or space separated | the list `ttmctl load --trust` exported, else every LB address |
//! | TTM_BACKEND | auto, kmod, bpf, off | auto |
//! | TTM_PIN_DIR | absolute path of the kit's pin directory | /sys/fs/bpf/ttm |
//! | TTM_BPF_MAP | absolute path of the kit's peer map (its directory is the pin dir) | /sys/fs/bpf/ttm/ttm_peers |
//! | TTM_RUN_DIR | absolute path where `ttmctl load` exports the trust list | /run/ttm |
//! | TTM_LOG | off, error, warn, info, debug | warn |
//! | TTM_LOG_FORMAT | text, json | text |
//! | TTM_WIDEN | auto, on, off | auto |

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::log::Level;
use ttm_cidr::Cidr;

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/ttm";
/// Where `ttmctl load` exports the trust list (as ttmctl's own default).
pub const DEFAULT_RUN_DIR: &str = "/run/ttm";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Kmod,
    Bpf,
    Off,
}

/// TTM_WIDEN: whether an IPv6 client may be shown on an AF_INET socket as
/// a `sockaddr_in6` (when the caller's buffer holds 28 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WidenChoice {
    /// Widen, except in the programs of [`crate::rewrite::NO_WIDENING`].
    Auto,
    On,
    Off,
}

#[derive(Debug)]
pub struct Config {
    pub disabled: bool,
    /// None: every program.
    pub programs: Option<Vec<String>>,
    /// TTM_TRUSTED. None: not set, so the list `ttmctl load` exported
    /// applies, or (without one) every LB address is trusted.
    pub trusted: Option<Vec<Cidr>>,
    pub backend: BackendChoice,
    /// Where the eBPF kit is pinned: TTM_PIN_DIR, or TTM_BPF_MAP's directory.
    pub pin_dir: PathBuf,
    /// TTM_RUN_DIR: where ttmctl exports the trust list.
    pub run_dir: PathBuf,
    pub log_level: Level,
    pub log_json: bool,
    pub widen: WidenChoice,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Warning {
    pub var: &'static str,
    pub value: String,
    pub problem: String,
}

impl Config {
    /// Reads the configuration through `get` (the process environment in
    /// production, a table in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<OsString>) -> (Config, Vec<Warning>) {
        let mut warnings = Vec::new();
        let mut warn = |var: &'static str, value: &str, problem: String| {
            warnings.push(Warning {
                var,
                value: value.to_owned(),
                problem,
            })
        };
        let text = |var: &str| get(var).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());

        let log_level = match text("TTM_LOG") {
            None => Level::DEFAULT,
            Some(v) => Level::parse(&v).unwrap_or_else(|| {
                warn(
                    "TTM_LOG",
                    &v,
                    "expected off, error, warn, info or debug; using warn".into(),
                );
                Level::DEFAULT
            }),
        };
        let log_json = match text("TTM_LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("" | "text") => false,
            Some("json") => true,
            Some(v) => {
                warn(
                    "TTM_LOG_FORMAT",
                    v,
                    "expected text or json; using text".into(),
                );
                false
            }
        };
        let disabled = match text("TTM_DISABLE") {
            None => false,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "" | "0" | "false" | "no" | "off" => false,
                _ => {
                    // Whoever set it was reaching for the off switch.
                    warn(
                        "TTM_DISABLE",
                        &v,
                        "expected 1 or 0; treating it as 1 (pass-through)".into(),
                    );
                    true
                }
            },
        };
        let programs = match text("TTM_PROGRAMS") {
            None => None,
            Some(v) if v.trim().is_empty() => None,
            Some(v) => {
                let names: Vec<String> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(|n| n.rsplit('/').next().unwrap_or(n).to_owned())
                    .filter(|n| !n.is_empty())
                    .collect();
                if names.is_empty() {
                    warn(
                        "TTM_PROGRAMS",
                        &v,
                        "no program name in the list; applying to no program".into(),
                    );
                }
                Some(names)
            }
        };
        let trusted = match text("TTM_TRUSTED") {
            None => None,
            Some(v) if v.trim().is_empty() => None,
            Some(v) => {
                // One syntax with `ttmctl load --trust` and TRUST= in
                // ttm.conf (ttm_cidr::entries); a bad entry is named and
                // skipped, the rest still apply.
                let mut list = Vec::new();
                let mut problems = Vec::new();
                for entry in ttm_cidr::entries(&v) {
                    match Cidr::parse(entry) {
                        Ok(c) => list.push(c),
                        Err(e) => problems.push(format!("{e}: ignored")),
                    }
                }
                if list.is_empty() {
                    problems.push(
                        "no valid entry: trusting no LB address (nothing is rewritten)".into(),
                    );
                }
                if !problems.is_empty() {
                    warn("TTM_TRUSTED", &v, problems.join("; "));
                }
                Some(list)
            }
        };
        let backend = match text("TTM_BACKEND").as_deref().map(str::trim) {
            None | Some("" | "auto") => BackendChoice::Auto,
            Some("kmod") => BackendChoice::Kmod,
            Some("bpf") => BackendChoice::Bpf,
            Some("off" | "none") => BackendChoice::Off,
            Some(v) => {
                warn(
                    "TTM_BACKEND",
                    v,
                    "expected auto, kmod, bpf or off; using auto".into(),
                );
                BackendChoice::Auto
            }
        };
        let widen = match text("TTM_WIDEN") {
            None => WidenChoice::Auto,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "" | "auto" => WidenChoice::Auto,
                "on" => WidenChoice::On,
                "off" => WidenChoice::Off,
                _ => {
                    warn(
                        "TTM_WIDEN",
                        &v,
                        "expected auto, on or off; using auto".into(),
                    );
                    WidenChoice::Auto
                }
            },
        };
        // A path setting: absolute (relative to what? the server's cwd
        // is nobody's intent), or the default with a warning.
        let mut path = |var: &'static str, default: &str| -> Option<PathBuf> {
            let v = get(var).filter(|v| !v.is_empty())?;
            let bytes = v.as_bytes();
            if bytes.starts_with(b"/") && bytes.len() < libc::PATH_MAX as usize {
                return Some(PathBuf::from(v));
            }
            warn(
                var,
                &String::from_utf8_lossy(bytes),
                format!("expected an absolute path; using {default}"),
            );
            None
        };
        let pin_dir = path("TTM_PIN_DIR", DEFAULT_PIN_DIR)
            .or_else(|| {
                let map = path("TTM_BPF_MAP", "/sys/fs/bpf/ttm/ttm_peers")?;
                map.parent().map(Path::to_owned)
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR));
        let run_dir =
            path("TTM_RUN_DIR", DEFAULT_RUN_DIR).unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIR));
        (
            Config {
                disabled,
                programs,
                trusted,
                backend,
                pin_dir,
                run_dir,
                log_level,
                log_json,
                widen,
            },
            warnings,
        )
    }

    /// Whether this process is one TTM_PROGRAMS names. `names` are the
    /// process's names: the basename of argv[0] and the kernel's comm
    /// (a script run through its #! line has the interpreter in argv[0]
    /// and the script in comm, so either may be what an operator writes).
    pub fn program_selected(&self, names: &[&str]) -> bool {
        match &self.programs {
            None => true,
            Some(list) => list
                .iter()
                .any(|p| names.iter().any(|n| !n.is_empty() && n == p)),
        }
    }
}

impl Config {
    /// Whether the hooks may widen, for a process with these names (as
    /// for [`Config::program_selected`]), and why, for the info log.
    pub fn widening(&self, names: &[&str]) -> (bool, String) {
        match self.widen {
            WidenChoice::On => (true, "TTM_WIDEN=on".into()),
            WidenChoice::Off => (false, "TTM_WIDEN=off".into()),
            WidenChoice::Auto => {
                let listed = crate::rewrite::NO_WIDENING
                    .iter()
                    .find(|(p, _)| names.iter().any(|n| n == p));
                match listed {
                    Some((p, why)) => (
                        false,
                        format!(
                            "auto: {p} {why}; IPv6 clients on its AF_INET sockets keep the LB address (TTM_WIDEN=on overrides)"
                        ),
                    ),
                    None => (true, "auto".into()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> (Config, Vec<Warning>) {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let (c, w) = parse(&[]);
        assert!(w.is_empty());
        assert!(!c.disabled);
        assert_eq!(c.programs, None);
        assert_eq!(c.trusted, None);
        assert_eq!(c.backend, BackendChoice::Auto);
        assert_eq!(c.pin_dir, Path::new(DEFAULT_PIN_DIR));
        assert_eq!(c.run_dir, Path::new(DEFAULT_RUN_DIR));
        assert_eq!(c.log_level, Level::Warn);
        assert!(!c.log_json);
        assert!(c.program_selected(&["anything"]));
        assert_eq!(c.widen, WidenChoice::Auto);
    }

    #[test]
    fn good_values() {
        let (c, w) = parse(&[
            ("TTM_DISABLE", "1"),
            ("TTM_PROGRAMS", "nginx, /usr/bin/python3,,"),
            ("TTM_TRUSTED", "10.0.0.0/8, 2001:db8::/32"),
            ("TTM_BACKEND", "bpf"),
            ("TTM_BPF_MAP", "/sys/fs/bpf/x/y"),
            ("TTM_RUN_DIR", "/tmp/run"),
            ("TTM_LOG", "debug"),
            ("TTM_LOG_FORMAT", "json"),
            ("TTM_WIDEN", " OFF "),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.widen, WidenChoice::Off);
        assert!(c.disabled);
        assert_eq!(
            c.programs,
            Some(vec!["nginx".to_string(), "python3".to_string()])
        );
        assert_eq!(c.trusted.as_ref().map(Vec::len), Some(2));
        assert_eq!(c.backend, BackendChoice::Bpf);
        assert_eq!(c.pin_dir, Path::new("/sys/fs/bpf/x"));
        assert_eq!(c.run_dir, Path::new("/tmp/run"));
        assert_eq!(c.log_level, Level::Debug);
        assert!(c.log_json);
        assert!(c.program_selected(&["python3", "server.py"]));
        assert!(c.program_selected(&["bash", "nginx"]));
        assert!(!c.program_selected(&["bash", "bash"]));
    }

    #[test]
    fn bad_values_warn_once_each_and_fall_back() {
        let (c, w) = parse(&[
            ("TTM_DISABLE", "maybe"),
            ("TTM_PROGRAMS", " , "),
            ("TTM_TRUSTED", "10.0.0.0/8,bogus"),
            ("TTM_BACKEND", "bfp"),
            ("TTM_BPF_MAP", "relative/path"),
            ("TTM_RUN_DIR", "run"),
            ("TTM_LOG", "loud"),
            ("TTM_LOG_FORMAT", "xml"),
            ("TTM_WIDEN", "yes"),
        ]);
        let vars: Vec<_> = w.iter().map(|w| w.var).collect();
        assert_eq!(
            vars,
            [
                "TTM_LOG",
                "TTM_LOG_FORMAT",
                "TTM_DISABLE",
                "TTM_PROGRAMS",
                "TTM_TRUSTED",
                "TTM_BACKEND",
                "TTM_WIDEN",
                "TTM_BPF_MAP",
                "TTM_RUN_DIR"
            ]
        );
        assert_eq!(c.widen, WidenChoice::Auto);
        assert!(c.disabled);
        assert_eq!(c.programs, Some(vec![]));
        assert!(!c.program_selected(&["nginx"]));
        assert_eq!(c.trusted.as_ref().map(Vec::len), Some(1));
        assert_eq!(c.backend, BackendChoice::Auto);
        assert_eq!(c.pin_dir, Path::new(DEFAULT_PIN_DIR));
        assert_eq!(c.run_dir, Path::new(DEFAULT_RUN_DIR));
        assert_eq!(c.log_level, Level::Warn);
        assert!(!c.log_json);
    }

    #[test]
    fn the_pin_dir_comes_from_ttm_pin_dir_first_then_the_maps_directory() {
        let (c, w) = parse(&[
            ("TTM_PIN_DIR", "/sys/fs/bpf/a"),
            ("TTM_BPF_MAP", "/sys/fs/bpf/b/ttm_peers"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.pin_dir, Path::new("/sys/fs/bpf/a"));
        let (c, w) = parse(&[("TTM_PIN_DIR", "a"), ("TTM_BPF_MAP", "/b/ttm_peers")]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(c.pin_dir, Path::new("/b"));
        let (c, _) = parse(&[("TTM_BPF_MAP", "/")]);
        assert_eq!(c.pin_dir, Path::new(DEFAULT_PIN_DIR));
    }

    #[test]
    fn trust_list_takes_commas_and_spaces_and_names_a_bad_entry() {
        let (c, w) = parse(&[("TTM_TRUSTED", "10.0.0.0/8 2001:db8::/32, 10.1.0.1/16")]);
        assert_eq!(c.trusted.as_ref().map(Vec::len), Some(2));
        assert_eq!(w.len(), 1);
        assert!(
            w[0].problem.contains("\"10.1.0.1/16\"") && w[0].problem.contains("10.1.0.0/16"),
            "{w:?}"
        );
    }

    #[test]
    fn all_bad_trust_list_trusts_nothing() {
        let (c, w) = parse(&[("TTM_TRUSTED", "x,y")]);
        assert_eq!(w.len(), 1);
        assert!(w[0].problem.contains("\"x\": not an IPv4"), "{w:?}");
        assert!(w[0].problem.contains("\"y\": not an IPv4"), "{w:?}");
        assert!(w[0].problem.contains("trusting no LB address"), "{w:?}");
        assert_eq!(c.trusted, Some(vec![]));
    }

    #[test]
    fn widening_per_program() {
        let names = |c: &Config, n: &[&str]| c.widening(n).0;
        let (auto, _) = parse(&[]);
        assert!(names(&auto, &["python3", "python3"]));
        assert!(!names(&auto, &["nginx", "nginx"]));
        // comm alone is enough (argv[0] may be a full path's basename of
        // a wrapper), and a name merely containing "nginx" is not nginx.
        assert!(!names(&auto, &["start-web", "nginx"]));
        assert!(names(&auto, &["nginx-exporter", "nginx-exporter"]));
        let (_, why) = auto.widening(&["nginx", "nginx"]);
        assert!(
            why.starts_with("auto: nginx ") && why.contains("TTM_WIDEN=on"),
            "{why}"
        );
        let (on, _) = parse(&[("TTM_WIDEN", "on")]);
        assert!(names(&on, &["nginx", "nginx"]));
        let (off, _) = parse(&[("TTM_WIDEN", "off")]);
        assert!(!names(&off, &["python3", "python3"]));
        assert_eq!(off.widening(&["x"]).1, "TTM_WIDEN=off");
    }
}
