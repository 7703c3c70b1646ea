"""Python's side of libttm's pass-through tests: CPython accepts with
accept4 and a buffer sized for the socket's family. Prints what Python sees
(ports replaced by 'p', since they differ between runs); the test compares
the output with and without LD_PRELOAD=libttm.so.

usage: probe.py UNIX_SOCKET_PATH
"""
import errno
import os
import socket
import sys


def show(label, fn):
    try:
        r = fn()
    except OSError as e:
        print(label, type(e).__name__, errno.errorcode.get(e.errno, e.errno))
        return None
    if isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], socket.socket):
        conn, addr = r
        print(label, "accepted", mask(addr))
        return conn
    print(label, mask(r))
    return r


def mask(addr):
    if isinstance(addr, tuple):
        return (addr[0], "p") + tuple(addr[2:])
    return addr


def tcp(family, host, connect_host):
    lst = socket.socket(family, socket.SOCK_STREAM)
    lst.bind((host, 0))
    lst.listen(8)
    lst.setblocking(False)
    show(f"{family.name} nothing-pending", lst.accept)
    lst.setblocking(True)
    cl = socket.create_connection((connect_host, lst.getsockname()[1]))
    conn = show(f"{family.name} accept", lst.accept)
    show(f"{family.name} getpeername", conn.getpeername)
    conn.close()
    cl.close()
    lst.close()


def main():
    path = sys.argv[1]
    tcp(socket.AF_INET, "127.0.0.1", "127.0.0.1")
    tcp(socket.AF_INET6, "::1", "::1")
    tcp(socket.AF_INET6, "::", "127.0.0.1")

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    show("not-listening accept", s.accept)
    show("not-connected getpeername", s.getpeername)
    s.close()

    if os.path.exists(path):
        os.unlink(path)
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.bind(path)
    u.listen(1)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)
    conn = show("unix accept", u.accept)
    show("unix getpeername", conn.getpeername)
    show("unix client getpeername", c.getpeername)
    for x in (conn, c, u):
        x.close()
    os.unlink(path)

    d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    d.connect(("127.0.0.1", 9))
    show("udp getpeername", d.getpeername)
    d.close()


main()
