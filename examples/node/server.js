// A Node.js TCP server that asks ttm for the real client of each
// connection through the vendors' getsockopt ABI: getsockopt(fd, SOL_IP,
// 1345) into struct ttm_peer { u16 af (host order); be16 port;
// u32 addr[4]; }.
//
// Node's core has no getsockopt, so this calls libc's through koffi, an
// FFI package from npm that ships prebuilt binaries (no compiler, no
// node-gyp): `npm install` beside this file. The descriptor is
// socket._handle.fd (Node's TCP handle; not a documented API, but stable
// on Unix for years).
//
// Without koffi there are two other ways: the kernel side alone rewrites
// what Node sees in-kernel wherever the listener's family can hold the
// client (remoteAddress is then already right), and libttm.so preloaded
// widens Node's getpeername() (Node accepts with accept4(fd, NULL, NULL)
// and asks getpeername with a 128-byte buffer) so remoteAddress shows even
// an IPv6 client on an IPv4 listener (6to4), with no code at all.
//
// Usage: node server.js [HOST] [PORT] [CONNECTIONS]   (HOST 0.0.0.0: AF_INET)
// For every connection it prints and replies one line:
//   accept 198.51.100.1:40000 ttm 2001:db8::7 4242
'use strict';
const net = require('net');
const os = require('os');
const koffi = require('koffi');

const SOL_IP = 0;
const TTM_SO_GET_PEER = 1345;
const AF_INET = 2;
const AF_INET6 = 10;

const libc = koffi.load('libc.so.6');
const getsockopt = libc.func(
  'int getsockopt(int fd, int level, int optname, _Out_ uint8_t *optval, _Inout_ uint32_t *optlen)');

// The client ttm recorded for the socket, as { address, port }; throws
// with the errno getsockopt failed with (ENOPROTOOPT: nothing answers
// 1345 on this host).
function ttmPeer(socket) {
  const fd = socket._handle && socket._handle.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new Error('no file descriptor for this socket');
  }
  const buf = Buffer.alloc(20);
  const len = [buf.length];
  if (getsockopt(fd, SOL_IP, TTM_SO_GET_PEER, buf, len) !== 0) {
    throw new Error(`getsockopt errno ${koffi.errno()}`);
  }
  const af = os.endianness() === 'LE' ? buf.readUInt16LE(0) : buf.readUInt16BE(0);
  const port = buf.readUInt16BE(2);
  if (af === AF_INET) {
    return { address: Array.from(buf.subarray(4, 8)).join('.'), port };
  }
  if (af === AF_INET6) {
    const groups = [];
    for (let i = 4; i < 20; i += 2) groups.push(buf.readUInt16BE(i).toString(16));
    // The URL parser writes an IPv6 address in its canonical short form.
    const address = new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
    return { address, port };
  }
  throw new Error(`ttm_peer: unknown address family ${af}`);
}

const [host = '0.0.0.0', port = '8080', count = '-1'] = process.argv.slice(2);
let left = Number(count);
const server = net.createServer((socket) => {
  const remote = socket.remoteFamily === 'IPv6'
    ? `[${socket.remoteAddress}]:${socket.remotePort}`
    : `${socket.remoteAddress}:${socket.remotePort}`;
  let line = `accept ${remote}`;
  try {
    const peer = ttmPeer(socket);
    line += ` ttm ${peer.address} ${peer.port}`;
  } catch (e) {
    line += ` ttm error ${e.message}`;
  }
  console.log(line);
  socket.end(`${line}\n`);
  if (left > 0 && --left === 0) server.close();
});
server.listen(Number(port), host, () => {
  const a = server.address();
  console.log(`listening on ${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
});
