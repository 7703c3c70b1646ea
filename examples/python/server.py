#!/usr/bin/env python3
"""The vendor's Python example server, ported to Python 3.

The parsing of the getsockopt answer is the vendor's, unchanged:
struct.Struct('!bbH4s12s') over the 20-byte struct ttm_peer (its first two
bytes are the family in host order, so data[0] is the family on
little-endian hosts; data[2] is the port; data[3] the IPv4 address or,
with data[4], the IPv6 address).

Under LD_PRELOAD=libttm.so, accept() and getpeername() already return the
real client; getsockopt works wherever kgwttm or the ttm eBPF kit answers
it. The socket listens on :: (dual-stack) by default: an AF_INET socket in
CPython accepts into a 16-byte buffer, which cannot show an IPv6 client.

usage: server.py [HOST] [PORT] [CONNECTIONS]
"""
import socket
import struct
import sys
from socket import inet_ntop


def main():
    host = sys.argv[1] if len(sys.argv) > 1 else "::"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 8080
    count = int(sys.argv[3]) if len(sys.argv) > 3 else -1

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((host, port))
    s.listen(128)
    print("listening on", s.getsockname(), flush=True)

    while count != 0:
        # ... user socket logic
        ss, addr = s.accept()
        # 4to4: the client ip/port directly; 6to4: needs libttm.so (or the
        # LB's local address shows)
        print("get client info:", addr)  # 4to4 method one
        print("getpeername:", ss.getpeername())  # 4to4 method two
        # 0 == SOL_IP; 1345 == TTM_SO_GET_PEER; 20 == buff len
        try:
            buf = ss.getsockopt(0, 1345, 20)  # 4to4 method three / 6to4 method
        except OSError as e:
            print("getsockopt failed:", e)
        else:
            # parse as struct ttm_data_v6
            obj_p = struct.Struct("!bbH4s12s")
            data = obj_p.unpack(buf)
            # by family: 2 == AF_INET, 10 == AF_INET6
            print("port:", data[2])
            if data[0] == 2:
                print("ipv4:", inet_ntop(data[0], data[3]))
            else:
                print("ipv6:", inet_ntop(data[0], data[3] + data[4]))  # 10 is AF_INET6
        sys.stdout.flush()
        ss.sendall(b"hello\n")
        ss.close()
        # ... user logic continues
        if count > 0:
            count -= 1


if __name__ == "__main__":
    main()
