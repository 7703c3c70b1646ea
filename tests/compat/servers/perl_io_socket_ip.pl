# Perl's IO::Socket::IP (core), unmodified: every response is what
# peerhost/peerport (getpeername) say about the peer.
# Usage: perl perl_io_socket_ip.pl HOST PORT (HOST 0.0.0.0: AF_INET; '::': dual-stack)
use strict;
use warnings;
use IO::Socket::IP;

my ($host, $port) = @ARGV;
my $server = IO::Socket::IP->new(
    LocalHost => $host,
    LocalPort => $port,
    Listen    => 16,
    ReuseAddr => 1,
    ($host =~ /:/ ? (V6Only => 0) : ()),
) or die "listen on $host $port: $@";
while (my $client = $server->accept) {
    while (my $line = <$client>) {
        last if $line eq "\r\n";
    }
    my $body = $client->peerhost . " " . $client->peerport . "\n";
    print $client "HTTP/1.0 200 OK\r\nContent-Length: " . length($body) . "\r\n\r\n" . $body;
    close $client;
}
