//! `ttmctl simulate`: the LB emulator. Attached to a cgroup of client
//! processes, it writes the configured option bytes into the third ACK of
//! every connection they make — what a full-NAT LB does on its way to the
//! server — so a server can be checked with no LB, and tests can send
//! every format, any claim, and malformed lists.

use anyhow::{Context, Result, bail};
use serde_json::json;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::path::Path;

use crate::abi::{self, LB_CHUNK_MAX, LB_CHUNKS, LB_COUNTERS, LbConfig, pins};
use crate::lock::PinDirLock;
use crate::objects::ATTACHMENTS;
use crate::pinset::PinSet;
use crate::sys::attach;
use crate::{DEFAULT_LB_PIN_DIR, cgroup, escape, format, pinned, preflight, programs};

/// The claimed client: an address, and a port or "each connection's own
/// source port".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub addr: IpAddr,
    pub port: Option<u16>,
}

impl Claim {
    /// `IP:PORT`, `[IPv6]:PORT`, or a bare `IP`.
    pub fn parse(s: &str) -> Result<Self> {
        if let Ok(sa) = s.parse::<SocketAddr>() {
            if sa.port() == 0 {
                bail!("bad --client {s:?}: port 0 is no client's port");
            }
            return Ok(Claim {
                addr: sa.ip(),
                port: Some(sa.port()),
            });
        }
        let bare = s.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(addr) => Ok(Claim { addr, port: None }),
            Err(_) => bail!("bad --client {s:?}: expected IP, IP:PORT or [IPv6]:PORT"),
        }
    }
}

/// The option bytes for a claim in a format (`KIND/LEN`).
pub fn encode(claim: &Claim, fmt: Option<&str>) -> Result<LbConfig> {
    let (kind, len) = match fmt {
        Some(f) => {
            format::parse(f)?;
            let (k, l) = f.split_once('/').unwrap_or_default();
            (k.trim().parse::<u8>()?, l.trim().parse::<u8>()?)
        }
        None if claim.addr.is_ipv4() => (254, 8),
        None => (254, 20),
    };
    let mut chunk = vec![kind, len];
    chunk.extend_from_slice(&claim.port.unwrap_or(0).to_be_bytes());
    match (claim.addr, len) {
        (IpAddr::V4(a), 8) => chunk.extend_from_slice(&a.octets()),
        // A 20-byte format carries IPv4 clients v4-mapped, as NAT64 LBs do.
        (IpAddr::V4(a), _) => chunk.extend_from_slice(&a.to_ipv6_mapped().octets()),
        (IpAddr::V6(a), 20) => chunk.extend_from_slice(&a.octets()),
        (IpAddr::V6(_), _) => {
            bail!("format {kind}/{len} carries only IPv4 clients; use a /20 format")
        }
    }
    let mut cfg = chunks(&[chunk])?;
    if claim.port.is_none() {
        cfg.flags |= abi::LB_PORT_FROM_SOURCE;
    }
    Ok(cfg)
}

/// Raw chunks, each written by one bpf_store_hdr_opt call, byte for byte
/// as given. The kernel writes as many bytes as a chunk's length byte
/// says (bytes past it would be dropped without a word, so such a chunk
/// is refused), never an EOL/NOP kind, and at least 4 bytes of kinds
/// 253/254. Malformed lists are built from a last chunk that is a lone
/// kind byte (`c9`: the kernel is given `c9 01` and writes the `c9`), or a
/// kind with length byte 1 (`c801`: the kernel writes the `c8`, the NOP
/// padding it adds after the options is the `01`). Nothing can follow
/// either: the kernel refuses to write past an option it cannot walk.
/// The kernel then pads the options with NOPs to a multiple of 4 bytes.
pub fn chunks(list: &[Vec<u8>]) -> Result<LbConfig> {
    if list.is_empty() || list.len() > LB_CHUNKS {
        bail!("give 1 to {LB_CHUNKS} option chunks");
    }
    let mut cfg = LbConfig::default();
    let mut written = 0usize;
    for (i, c) in list.iter().enumerate() {
        let hex = hex(c);
        let last = i + 1 == list.len();
        if c.is_empty() || c.len() > LB_CHUNK_MAX {
            bail!("option chunk {hex}: 1 to {LB_CHUNK_MAX} bytes (kind, length, data)");
        }
        if c[0] <= 1 {
            bail!("option chunk {hex}: the kernel writes no EOL/NOP kinds; pick another kind");
        }
        let kernel_chunk: &[u8] = match c.get(1).map(|&l| usize::from(l)) {
            None | Some(1) if !last => bail!(
                "option chunk {hex}: an option without a valid length byte ends the list \
                 (the kernel writes nothing after it); give it last"
            ),
            None => &[c[0], 1],
            Some(0) => bail!("option chunk {hex}: the kernel writes nothing of a length byte 0"),
            Some(1) if c.len() > 2 => bail!(
                "option chunk {hex}: its length byte 1 covers only its kind byte; the kernel \
                 would drop the {} bytes after it",
                c.len() - 1
            ),
            // The kernel writes the kind; the `01` is its NOP padding.
            Some(1) => c,
            Some(l) if l > c.len() => bail!(
                "option chunk {hex}: its length byte {l} exceeds its {} bytes",
                c.len()
            ),
            Some(l) if l < c.len() => bail!(
                "option chunk {hex}: its length byte {l} covers {l} of its {} bytes, and the \
                 kernel would drop the rest; give each option as its own --raw",
                c.len()
            ),
            Some(l) if (c[0] == 253 || c[0] == 254) && l < 4 => {
                bail!("option chunk {hex}: the kernel wants kinds 253/254 at least 4 bytes long")
            }
            Some(_) => c,
        };
        // The kernel writes each kind once (253/254: each magic, the two
        // bytes after the length) and skips a repeat without a word.
        let same = |d: &Vec<u8>| {
            d[0] == c[0] && (!matches!(c[0], 253 | 254) || d.get(2..4) == c.get(2..4))
        };
        if list[..i].iter().any(same) {
            bail!(
                "option chunk {hex}: the kernel writes each option kind once; this one is a repeat"
            );
        }
        cfg.chunk[i][..kernel_chunk.len()].copy_from_slice(kernel_chunk);
        cfg.chunk_len[i] = kernel_chunk.len() as u8;
        // The room is what was given: a `c801`'s second byte is the NOP
        // the kernel pads the reserved room with.
        written += c.len();
    }
    if written < 2 {
        bail!(
            "a lone kind byte needs an option before it: the kernel reserves no room of \
             less than 2 bytes"
        );
    }
    if written > 40 {
        bail!(
            "the options add up to {written} bytes; a TCP header holds 40 (28 beside timestamps)"
        );
    }
    cfg.nchunks = list.len() as u32;
    cfg.reserve = written as u32;
    Ok(cfg)
}

pub fn parse_hex(s: &str) -> Result<Vec<u8>> {
    let s: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if s.len() % 2 != 0 {
        bail!("bad --raw {s:?}: an even number of hex digits");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .with_context(|| format!("bad --raw {s:?}: not hex"))
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn start(cg: &Path, dir: &Path, cfg: LbConfig) -> Result<()> {
    preflight::require_root("simulate")?;
    preflight::require_kernel()?;
    let cg = cgroup::resolve(cg)?;
    if cgroup::is_root(&cg)? {
        bail!(
            "refusing to emulate an LB for the root cgroup: every connection on the host would carry the option; make a cgroup for the clients"
        );
    }
    let (dir, _lock) = PinDirLock::create(dir)?;
    let dir = dir.as_path();
    if dir.join(ATTACHMENTS[0].link_pin).exists() {
        bail!(
            "pin dir {} holds ttm's kernel side (ttmctl load); give the emulator a directory \
             of its own, e.g. {DEFAULT_LB_PIN_DIR}",
            escape::path(dir)
        );
    }
    let link_pin = dir.join(pins::LB_LINK);
    if link_pin.exists() {
        let l = pinned::link(&link_pin)?;
        if l.cgroup_id != cgroup::id(&cg)? {
            bail!(
                "the emulator at {} serves cgroup {}; run `ttmctl simulate stop --pin-dir {}` first",
                dir.display(),
                l.cgroup
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| l.cgroup_id.to_string()),
                dir.display()
            );
        }
        pinned::set_array_value(dir, pins::LB_CONFIG, cfg)?;
        println!("ttm: LB emulator option updated ({})", dir.display());
        return Ok(());
    }
    let r = attach_new(&cg, dir, cfg);
    if r.is_err() {
        crate::unload::remove_pins(dir);
    }
    r?;
    println!(
        "ttm: LB emulator attached to {} (pins in {})",
        cg.display(),
        dir.display()
    );
    Ok(())
}

fn attach_new(cg: &Path, dir: &Path, cfg: LbConfig) -> Result<()> {
    let mut ebpf = programs::open(crate::objects::TTM_LB, None)?;
    {
        let map = ebpf
            .map_mut(pins::LB_CONFIG)
            .context("emulator config map missing")?;
        let mut arr: aya::maps::Array<_, LbConfig> = aya::maps::Array::try_from(map)?;
        arr.set(0, cfg, 0)?;
    }
    programs::load(&mut ebpf, "ttm_lb")?;
    let file = File::open(cg)?;
    let link = programs::attach(&ebpf, "ttm_lb", &file, attach::CGROUP_SOCK_OPS)?;
    let mut set = PinSet::new(dir);
    set.stage(
        crate::load::map_fd(&ebpf, pins::LB_CONFIG)?,
        pins::LB_CONFIG,
        0o600,
    )?;
    set.stage(
        crate::load::map_fd(&ebpf, pins::LB_COUNTERS)?,
        pins::LB_COUNTERS,
        0o600,
    )?;
    set.stage(link.as_fd(), pins::LB_LINK, 0o600)?;
    set.commit()
}

pub fn status(dir: &Path, as_json: bool) -> Result<()> {
    preflight::require_root("simulate status")?;
    crate::bpffs::require_dir(dir)?;
    if !dir.join(pins::LB_LINK).exists() {
        if as_json {
            println!("{}", json!({ "running": false, "pin_dir": dir }));
        } else {
            println!("ttm: no LB emulator at {}", dir.display());
        }
        return Ok(());
    }
    let link = pinned::link(&dir.join(pins::LB_LINK))?;
    let counts = pinned::counters(dir, pins::LB_COUNTERS, LB_COUNTERS.len())?;
    let cfg: LbConfig = pinned::array_value(dir, pins::LB_CONFIG)?;
    let options: Vec<String> = (0..cfg.nchunks as usize)
        .map(|i| hex(&cfg.chunk[i][..usize::from(cfg.chunk_len[i])]))
        .collect();
    let mut v = json!({
        "running": true,
        "pin_dir": dir,
        "cgroup": link.cgroup.as_deref(),
        "options": options,
        "port_from_source": cfg.flags & abi::LB_PORT_FROM_SOURCE != 0,
    });
    for (n, c) in LB_COUNTERS.iter().zip(&counts) {
        v[*n] = json!(c);
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "ttm: LB emulator on {}",
            v["cgroup"].as_str().unwrap_or("?")
        );
        println!("  options  {}", options.join(" "));
        for n in LB_COUNTERS {
            println!("  {:<15} {}", n, v[*n]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_parse_in_every_form() {
        let c = Claim::parse("203.0.113.7:4242").unwrap();
        assert_eq!(
            (c.addr.to_string(), c.port),
            ("203.0.113.7".into(), Some(4242))
        );
        let c = Claim::parse("[2001:db8::7]:80").unwrap();
        assert_eq!(
            (c.addr.to_string(), c.port),
            ("2001:db8::7".into(), Some(80))
        );
        assert_eq!(Claim::parse("2001:db8::7").unwrap().port, None);
        assert_eq!(Claim::parse("203.0.113.7").unwrap().port, None);
        assert!(Claim::parse("203.0.113.7:0").is_err());
        assert!(Claim::parse("nope:1").is_err());
    }

    #[test]
    fn encodes_the_wire_layout() {
        let c = Claim::parse("203.0.113.7:4242").unwrap();
        let cfg = encode(&c, None).unwrap();
        assert_eq!(&cfg.chunk[0][..8], &[254, 8, 0x10, 0x92, 203, 0, 113, 7]);
        assert_eq!((cfg.nchunks, cfg.reserve, cfg.chunk_len[0]), (1, 8, 8));
        let cfg = encode(&c, Some("253/20")).unwrap();
        assert_eq!(&cfg.chunk[0][..4], &[253, 20, 0x10, 0x92]);
        assert_eq!(&cfg.chunk[0][14..20], &[0xff, 0xff, 203, 0, 113, 7]);
        let v6 = Claim::parse("2001:db8::7").unwrap();
        let cfg = encode(&v6, None).unwrap();
        assert_eq!(
            cfg.flags & abi::LB_PORT_FROM_SOURCE,
            abi::LB_PORT_FROM_SOURCE
        );
        assert!(encode(&v6, Some("200/8")).is_err());
        assert!(encode(&c, Some("254/9")).is_err());
    }

    #[test]
    fn raw_chunks_are_checked_like_the_kernel_does() {
        let raw = |list: &[&str]| {
            chunks(
                &list
                    .iter()
                    .map(|h| parse_hex(h).unwrap())
                    .collect::<Vec<_>>(),
            )
        };
        assert!(raw(&["2702", "c801"]).is_ok());
        assert!(raw(&["0102"]).is_err()); // NOP kind
        assert!(raw(&["c805aa"]).is_err()); // len byte > bytes
        assert!(raw(&["fe02aa"]).is_err()); // 254 shorter than 4
        assert!(raw(&["c800"]).is_err()); // nothing would be written
        // F10: bytes past the length byte would be dropped by the kernel.
        let e = raw(&["c804aabbccdd"]).unwrap_err().to_string();
        assert!(e.contains("covers 4 of its 6 bytes"), "{e}");
        assert!(raw(&["c801aa"]).is_err());
        // Nothing can be written after an option the kernel cannot walk.
        assert!(raw(&["c801", "c802"]).is_err());
        assert!(raw(&["c9", "c802"]).is_err());
        assert!(raw(&["c9"]).is_err()); // less than the kernel reserves
        assert!(raw(&["c802", "c801"]).is_err()); // a repeated kind
        assert!(raw(&["fe08111122223333", "fe08444422223333"]).is_ok()); // other magic
        assert!(raw(&["fe08111122223333", "fe08111144445555"]).is_err());
        // What is given is what is reserved and written.
        let cfg = raw(&["c803aa", "c9"]).unwrap();
        assert_eq!((cfg.nchunks, cfg.reserve), (2, 4));
        assert_eq!((cfg.chunk_len[0], cfg.chunk_len[1]), (3, 2));
        assert_eq!(&cfg.chunk[1][..2], &[0xc9, 1]);
        let cfg = raw(&["c801"]).unwrap();
        assert_eq!((cfg.reserve, cfg.chunk_len[0]), (2, 2));
        assert!(chunks(&[]).is_err());
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
        let five = vec![parse_hex("c802").unwrap(); 5];
        assert!(chunks(&five).is_err());
    }
}
