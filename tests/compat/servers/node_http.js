// Node.js http, unmodified: every response is what Node itself says
// about the peer (req.socket.remoteAddress and remotePort).
// Usage: node node_http.js HOST PORT  (HOST 0.0.0.0: AF_INET; '::': dual-stack)
const http = require('http');
const [host, port] = process.argv.slice(2);
http.createServer((req, res) => {
  res.end(`${req.socket.remoteAddress} ${req.socket.remotePort}\n`);
}).listen(Number(port), host);
