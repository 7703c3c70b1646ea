#!/usr/bin/env python3
"""Attaches a loaded fentry/fexit program and pins the link, for
scripts/bench.sh (Debian 12's bpftool 7.1 loads tracing programs but has
no way to attach them). Removing the link pin detaches it.

    attach_tracing.py PROG_PIN LINK_PIN
"""
import ctypes
import os
import platform
import struct
import sys

SYS_BPF = {"x86_64": 321, "aarch64": 280}[platform.machine()]
BPF_OBJ_PIN, BPF_OBJ_GET, BPF_RAW_TRACEPOINT_OPEN = 6, 7, 17

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def bpf(cmd, attr):
    r = libc.syscall(SYS_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def obj(cmd, path, fd=0):
    """BPF_OBJ_GET / BPF_OBJ_PIN: u64 pathname, u32 bpf_fd, u32 file_flags."""
    p = ctypes.create_string_buffer(path.encode())
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("=QII", attr, 0, ctypes.addressof(p), fd, 0)
    return bpf(cmd, attr)


def main():
    prog = obj(BPF_OBJ_GET, sys.argv[1])
    # raw_tracepoint.name NULL: attach a tracing program where its BTF says.
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("=QI", attr, 0, 0, prog)
    link = bpf(BPF_RAW_TRACEPOINT_OPEN, attr)
    obj(BPF_OBJ_PIN, sys.argv[2], link)


if __name__ == "__main__":
    main()
