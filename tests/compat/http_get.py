"""The compatibility matrix's HTTP client (run in the client cgroup, so the
LB emulator writes the claimed client into each handshake).

Usage: http_get.py ADDR PORT:PATH...
One GET per PORT:PATH, each on a connection of its own, one JSON line each:
{"port", "path", "local": [ip, port], "status", "body"} or {"port", "path",
"error"}. A failed request does not stop the others: the suite reports it
in the cell it belongs to.
"""

import json
import socket
import sys


def get(addr, port, path):
    rec = {"port": port, "path": path}
    try:
        with socket.create_connection((addr, port), timeout=10) as s:
            rec["local"] = list(s.getsockname()[:2])
            s.sendall(
                f"GET {path} HTTP/1.0\r\nHost: compat.invalid\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        rec["status"] = int(status_line.split()[1])
        rec["body"] = body.decode("utf-8", "replace")
    except (OSError, ValueError, IndexError) as e:
        rec["error"] = f"{type(e).__name__}: {e}"
    return rec


def main():
    addr = sys.argv[1]
    for item in sys.argv[2:]:
        port, path = item.split(":", 1)
        print(json.dumps(get(addr, int(port), path)), flush=True)


if __name__ == "__main__":
    main()
