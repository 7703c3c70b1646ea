//! The vendor's `struct ttm_peer` (Kingsoft kgwttm, getsockopt SOL_IP/1345),
//! which is also exactly the value of the eBPF kit's per-socket map.

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use libc::{AF_INET, AF_INET6};

/// `getsockopt(fd, SOL_IP, TTM_SO_GET_PEER, ...)`: 64+1024+64+64+64+64 + 1.
pub const TTM_SO_GET_PEER: libc::c_int = 64 + 1024 + 64 + 64 + 64 + 64 + 1;
/// DPVS / Huawei ELB / Tencent NAT64: `getsockopt(fd, IPPROTO_IP, 4096)`.
pub const TOA_SO_GET_LOOKUP: libc::c_int = 4096;

/// Layout of the vendor ABI: `af` in host order (the vendor's Python parser
/// depends on that), `port` and the address in network order, IPv4 in
/// `addr[0]`. 20 bytes, 4-byte aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TtmPeer {
    pub af: u16,
    pub port: u16,
    pub addr: [u32; 4],
}

const _: () = assert!(core::mem::size_of::<TtmPeer>() == 20);
const _: () = assert!(core::mem::align_of::<TtmPeer>() == 4);

/// `struct toa_nat64_peer`: IPv6 clients only, 20 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ToaNat64Peer {
    pub saddr: [u8; 16],
    pub port: u16,
    pub pad: u16,
}

const _: () = assert!(core::mem::size_of::<ToaNat64Peer>() == 20);

impl TtmPeer {
    pub fn from_client(client: SocketAddr) -> Self {
        let mut peer = TtmPeer {
            port: client.port().to_be(),
            ..TtmPeer::default()
        };
        match client {
            SocketAddr::V4(a) => {
                peer.af = AF_INET as u16;
                peer.addr[0] = u32::from_ne_bytes(a.ip().octets());
            }
            SocketAddr::V6(a) => {
                peer.af = AF_INET6 as u16;
                for (i, chunk) in a.ip().octets().chunks_exact(4).enumerate() {
                    peer.addr[i] = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                }
            }
        }
        peer
    }

    pub fn from_nat64(p: &ToaNat64Peer) -> Self {
        let ip = Ipv6Addr::from(p.saddr);
        Self::from_client(SocketAddr::new(ip.into(), u16::from_be(p.port)))
    }

    fn addr_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, word) in self.addr.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
        out
    }

    /// The client this record names, or None for a record no real client
    /// can have (unknown family, port 0, unspecified address). An IPv4
    /// client sent as `::ffff:a.b.c.d` comes back as IPv4, so an AF_INET
    /// socket can be given it.
    pub fn client(&self) -> Option<SocketAddr> {
        let port = u16::from_be(self.port);
        if port == 0 {
            return None;
        }
        let ip: core::net::IpAddr = match i32::from(self.af) {
            AF_INET => Ipv4Addr::from(self.addr[0].to_ne_bytes()).into(),
            AF_INET6 => Ipv6Addr::from(self.addr_bytes()).to_canonical(),
            _ => return None,
        };
        if ip.is_unspecified() {
            return None;
        }
        Some(SocketAddr::new(ip, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;
    use std::path::Path;
    use std::process::Command;

    #[test]
    fn decodes_the_vendor_bytes() {
        // What the vendor's Python example unpacks with '!bbH4s12s'.
        let mut raw = [0u8; 20];
        raw[0..2].copy_from_slice(&(AF_INET as u16).to_ne_bytes());
        raw[2..4].copy_from_slice(&[0x1f, 0x90]);
        raw[4..8].copy_from_slice(&[198, 51, 100, 7]);
        // SAFETY: TtmPeer is 20 bytes of plain integers.
        let peer: TtmPeer = unsafe { core::mem::transmute(raw) };
        assert_eq!(peer.client(), Some("198.51.100.7:8080".parse().unwrap()));
        assert_eq!(TtmPeer::from_client(peer.client().unwrap()), peer);
    }

    #[test]
    fn mapped_and_bogus_records() {
        let v6: SocketAddr = "[2001:db8::7]:1".parse().unwrap();
        assert_eq!(TtmPeer::from_client(v6).client(), Some(v6));
        let mapped: SocketAddr = "[::ffff:192.0.2.9]:2".parse().unwrap();
        assert_eq!(
            TtmPeer::from_client(mapped).client(),
            Some("192.0.2.9:2".parse().unwrap())
        );
        assert_eq!(
            TtmPeer::from_client("0.0.0.0:5".parse().unwrap()).client(),
            None
        );
        assert_eq!(
            TtmPeer::from_client("[::]:5".parse().unwrap()).client(),
            None
        );
        assert_eq!(
            TtmPeer::from_client("1.2.3.4:0".parse().unwrap()).client(),
            None
        );
        let mut odd = TtmPeer::from_client("1.2.3.4:5".parse().unwrap());
        odd.af = 1;
        assert_eq!(odd.client(), None);
        let nat64 = ToaNat64Peer {
            saddr: "2001:db8::9".parse::<Ipv6Addr>().unwrap().octets(),
            port: 99u16.to_be(),
            pad: 0,
        };
        assert_eq!(
            TtmPeer::from_nat64(&nat64).client(),
            Some("[2001:db8::9]:99".parse().unwrap())
        );
    }

    /// Compiles `program` (C, or C++ when `lang` is "c++") with warnings
    /// as errors and returns what it prints.
    fn run_c(name: &str, lang: &str, program: &str) -> String {
        let dir = std::env::temp_dir().join(format!("ttm-{name}-{}-{lang}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join(if lang == "c" { "p.c" } else { "p.cc" });
        let exe = dir.join("p");
        std::fs::write(&src, program).unwrap();
        let compiler = if lang == "c" { "gcc" } else { "g++" };
        let out = Command::new(compiler)
            .args(["-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&exe)
            .arg(&src)
            .output()
            .expect("gcc/g++ (scripts/deps.sh installs them)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = Command::new(&exe).output().unwrap();
        std::fs::remove_dir_all(&dir).ok();
        String::from_utf8(run.stdout).unwrap()
    }

    /// The layout of struct ttm_peer and the optname, as `header` gives
    /// them to a C or C++ compiler.
    fn c_layout(header: &Path, lang: &str) -> String {
        let program = format!(
            r#"#include <stddef.h>
#include <stdio.h>
#include <netinet/in.h>
#include "{}"
int main(void) {{
    printf("%zu %zu %zu %zu %zu %zu %d\n", sizeof(struct ttm_peer),
           _Alignof_ttm, offsetof(struct ttm_peer, af),
           offsetof(struct ttm_peer, port), offsetof(struct ttm_peer, all),
           offsetof(struct ttm_peer, ip6), TTM_SO_GET_PEER);
    return 0;
}}
"#,
            header.display()
        )
        .replace("_Alignof_ttm", "__alignof__(struct ttm_peer)");
        run_c("layout", lang, &program)
    }

    #[test]
    fn rust_and_c_layouts_agree() {
        let rust = format!(
            "{} {} {} {} {} {} {}\n",
            core::mem::size_of::<TtmPeer>(),
            core::mem::align_of::<TtmPeer>(),
            offset_of!(TtmPeer, af),
            offset_of!(TtmPeer, port),
            offset_of!(TtmPeer, addr),
            offset_of!(TtmPeer, addr),
            TTM_SO_GET_PEER
        );
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let public = root.join("include/ttm.h");
        assert_eq!(c_layout(&public, "c"), rust, "include/ttm.h (C)");
        assert_eq!(c_layout(&public, "c++"), rust, "include/ttm.h (C++)");
    }

    #[test]
    fn bpf_header_agrees() {
        // The eBPF kit's header names the address array `addr`, not the
        // vendor's union; check its layout separately.
        let header = Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf/ttm.h");
        let program = format!(
            "#include <stdio.h>\n#include <stddef.h>\n#include \"{}\"\n\
             int main(void){{printf(\"%zu %zu %zu %zu %zu %d\\n\",sizeof(struct ttm_peer),\
             offsetof(struct ttm_peer,af),offsetof(struct ttm_peer,port),\
             offsetof(struct ttm_peer,addr),sizeof(struct toa_nat64_peer),TTM_SO_GET_PEER);return 0;}}\n",
            header.display()
        );
        let out = run_c("bpflayout", "c", &program);
        assert_eq!(
            out,
            format!(
                "{} {} {} {} {} {}\n",
                core::mem::size_of::<TtmPeer>(),
                offset_of!(TtmPeer, af),
                offset_of!(TtmPeer, port),
                offset_of!(TtmPeer, addr),
                core::mem::size_of::<ToaNat64Peer>(),
                TTM_SO_GET_PEER
            )
        );
    }
}
