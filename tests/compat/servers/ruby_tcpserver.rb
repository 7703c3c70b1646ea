# Ruby's TCPServer, unmodified, with the accept loop WEBrick and Puma use:
# every response is what Socket#peeraddr (getpeername) says about the peer.
# Usage: ruby ruby_tcpserver.rb HOST PORT (HOST 0.0.0.0: AF_INET; '::': dual-stack)
require 'socket'

host, port = ARGV
server = TCPServer.new(host, Integer(port))
loop do
  client = server.accept
  while (line = client.gets) && line != "\r\n"
  end
  _, peer_port, _, peer_ip = client.peeraddr(:numeric)
  body = "#{peer_ip} #{peer_port}\n"
  client.write("HTTP/1.0 200 OK\r\nContent-Length: #{body.bytesize}\r\n\r\n#{body}")
  client.close
end
