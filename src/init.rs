//! The load-time constructor: resolves the real symbols, reads the
//! environment, picks the backend, and leaves it all in [`STATE`], which
//! the hooks and the C API only ever read (an atomic load: safe in signal
//! handlers and after fork).

use std::ffi::CStr;
use std::path::Path;
use std::sync::OnceLock;

use ttm_cidr::Cidr;

use crate::backend::{self, Backend, PeerSource, RealHost};
use crate::config::Config;
use crate::hooks::{self, Hooks};
use crate::log::{self, Level, Value};
use crate::trust_export::{self, Exported};

pub static STATE: OnceLock<Hooks<Backend>> = OnceLock::new();

#[cfg(not(test))]
#[ctor::ctor(unsafe)]
fn ttm_load() {
    load();
}

/// The process's names as TTM_PROGRAMS matches them: basename of argv[0]
/// and the kernel's comm.
fn program_names() -> (String, String) {
    unsafe extern "C" {
        // glibc: basename of argv[0], set before any constructor runs.
        static program_invocation_short_name: *const libc::c_char;
    }
    // SAFETY: glibc initialises the pointer before constructors run; it is
    // NULL or a NUL-terminated string that lives as long as the process.
    let argv0 = unsafe {
        let p = program_invocation_short_name;
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    let mut comm = [0u8; 17];
    // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL included.
    let rc = unsafe { libc::prctl(libc::PR_GET_NAME, comm.as_mut_ptr()) };
    let comm = if rc == 0 {
        CStr::from_bytes_until_nul(&comm)
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        String::new()
    };
    (argv0, comm)
}

fn inactive(why: &str) {
    log::event(
        Level::Info,
        "backend",
        &[("backend", Value::Show(&"off")), ("why", Value::Text(why))],
    );
    let _ = STATE.set(Hooks {
        active: false,
        source: Backend::Off,
        trusted: None,
        widen: false,
    });
}

pub fn load() {
    let unresolved: Vec<&CStr> = hooks::resolve_all().collect();
    let (config, warnings) = Config::from_lookup(|k| std::env::var_os(k));
    let (argv0, comm) = program_names();
    let prog = if argv0.is_empty() { &comm } else { &argv0 };
    log::configure(config.log_level, config.log_json, prog);

    // A library in /etc/ld.so.preload is in every process: one not named
    // in TTM_PROGRAMS stays silent as well as inert.
    if !config.program_selected(&[&argv0, &comm]) {
        inactive(&format!(
            "program {prog} is not in TTM_PROGRAMS: pass-through"
        ));
        return;
    }
    for w in &warnings {
        log::event(
            Level::Warn,
            "config",
            &[
                ("var", Value::Show(&w.var)),
                ("value", Value::Text(&w.value)),
                ("why", Value::Text(&w.problem)),
            ],
        );
    }
    for name in unresolved {
        log::event(
            Level::Error,
            "resolve",
            &[
                ("symbol", Value::Show(&name.to_string_lossy())),
                (
                    "why",
                    Value::Text(
                        "dlsym(RTLD_NEXT) found no other definition; calling the system call directly",
                    ),
                ),
            ],
        );
    }
    if config.disabled {
        inactive("TTM_DISABLE is set: pass-through");
        return;
    }
    let selection = backend::select(config.backend, &config.pin_dir, &RealHost);
    if let Some(warning) = &selection.warning {
        log::event(
            Level::Warn,
            "backend",
            &[
                (
                    "backend",
                    Value::Show(&selection.backend.name().to_string_lossy()),
                ),
                ("why", Value::Text(warning)),
            ],
        );
    }
    log::event(
        Level::Info,
        "backend",
        &[
            (
                "backend",
                Value::Show(&selection.backend.name().to_string_lossy()),
            ),
            ("why", Value::Text(&selection.why)),
        ],
    );
    let (widen, widen_why) = config.widening(&[&argv0, &comm]);
    if !widen {
        // Said only when it departs from the rule (an IPv6 client shown
        // on an AF_INET socket when the buffer has room).
        log::event(
            Level::Info,
            "widen",
            &[
                ("widen", Value::Show(&"off")),
                ("why", Value::Text(&widen_why)),
            ],
        );
    }
    let trusted = if selection.backend.in_use() {
        trusted(config.trusted, &config.run_dir, &config.pin_dir)
    } else {
        // Nothing will be looked up: what the list would spare is nothing.
        config.trusted
    };
    let _ = STATE.set(Hooks {
        active: true,
        source: selection.backend,
        trusted,
        widen,
    });
}

/// The trust list the hooks apply: TTM_TRUSTED when set, else the one the
/// kit's `ttmctl load` exported, else none (every LB address). Logged.
fn trusted(from_env: Option<Vec<Cidr>>, run_dir: &Path, pin_dir: &Path) -> Option<Vec<Cidr>> {
    let file = trust_export::path(run_dir, pin_dir)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let shown = |list: &[Cidr]| {
        list.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    if let Some(list) = from_env {
        log::event(
            Level::Info,
            "trusted",
            &[
                ("prefixes", Value::Text(&shown(&list))),
                ("from", Value::Show(&"TTM_TRUSTED")),
            ],
        );
        return Some(list);
    }
    match trust_export::read(run_dir, pin_dir, &RealHost) {
        Ok(Exported::Only(list)) => {
            log::event(
                Level::Info,
                "trusted",
                &[
                    ("prefixes", Value::Text(&shown(&list))),
                    ("from", Value::Text(&file)),
                ],
            );
            Some(list)
        }
        Ok(Exported::Any) => {
            log::event(
                Level::Info,
                "trusted",
                &[
                    ("prefixes", Value::Text("any")),
                    ("from", Value::Text(&file)),
                ],
            );
            None
        }
        Ok(Exported::Missing) => {
            log::event(
                Level::Info,
                "trusted",
                &[
                    ("prefixes", Value::Text("any")),
                    (
                        "why",
                        Value::Text(&format!(
                            "no TTM_TRUSTED and no list exported at {file}: every LB address is looked up"
                        )),
                    ),
                ],
            );
            None
        }
        Err(why) => {
            log::event(
                Level::Warn,
                "trust_export",
                &[
                    ("file", Value::Text(&file)),
                    (
                        "why",
                        Value::Text(&format!(
                            "{why}; ignored: every LB address is looked up (TTM_TRUSTED overrides)"
                        )),
                    ),
                ],
            );
            None
        }
    }
}
