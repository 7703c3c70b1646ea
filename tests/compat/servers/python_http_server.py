"""CPython's http.server, unmodified: every response is the handler's own
client_address (what socket.accept() returned), then a line with what
getsockopt(SOL_IP, 1345) returns on the same connection: the remedy where
accept() cannot show the client (see docs/compatibility.md).

Usage: python3 python_http_server.py HOST PORT
(HOST 0.0.0.0: AF_INET; '::': dual-stack, as `python3 -m http.server --bind ::`)
"""

import socket
import struct
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

# BEGIN ttm_peer
TTM_PEER = 1345  # getsockopt(SOL_IP, 1345) -> struct ttm_peer, 20 bytes


def ttm_peer(sock):
    """The real client ttm recorded for the connected socket `sock`, as
    "ip port", from the vendor's struct ttm_peer: u16 af (host order),
    be16 port, the address (4 or 16 bytes)."""
    try:
        raw = sock.getsockopt(socket.SOL_IP, TTM_PEER, 20)
    except OSError as e:
        return f"errno {e.errno}"
    (af,) = struct.unpack("=H", raw[:2])
    (port,) = struct.unpack("!H", raw[2:4])
    size = 4 if af == socket.AF_INET else 16
    return f"{socket.inet_ntop(af, raw[4:4 + size])} {port}"
# END ttm_peer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        host, port = self.client_address[:2]
        body = f"{host} {port}\n1345 {ttm_peer(self.request)}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(HTTPServer):
    def server_bind(self):
        # As http.server's own DualStackServer does for --bind ::.
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    Server.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    Server((host, port), Handler).serve_forever()


if __name__ == "__main__":
    main()
