// Go net/http, unmodified: every response is r.RemoteAddr, then a line
// with what getsockopt(SOL_IP, 1345) returns on the same connection: the
// remedy where accept() cannot show the client (an IPv6 client on an IPv4
// listener; docs/compatibility.md shows ttmPeer).
// Usage: go_net_http HOST PORT (HOST 0.0.0.0: AF_INET ("tcp4"); '::': dual-stack)
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"unsafe"
)

type connKey struct{}

// BEGIN ttmPeer
// ttmPeer returns the real client that ttm recorded for c: the vendor's
// getsockopt(fd, SOL_IP, 1345) into struct ttm_peer {u16 af (host order);
// be16 port; u32 addr[4]}. Raw system calls work: the answer comes from
// the kernel side, no preloaded library is involved.
func ttmPeer(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, errors.New("not a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var peer [20]byte
	var callErr error
	err = rc.Control(func(fd uintptr) {
		size := uint32(len(peer))
		_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.SOL_IP, 1345,
			uintptr(unsafe.Pointer(&peer[0])), uintptr(unsafe.Pointer(&size)), 0)
		if errno != 0 {
			callErr = errno
		}
	})
	if err == nil {
		err = callErr
	}
	if err != nil {
		return netip.AddrPort{}, err
	}
	port := binary.BigEndian.Uint16(peer[2:4])
	switch *(*uint16)(unsafe.Pointer(&peer[0])) {
	case syscall.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4(*(*[4]byte)(peer[4:8])), port), nil
	case syscall.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(*(*[16]byte)(peer[4:20])), port), nil
	}
	return netip.AddrPort{}, errors.New("ttm_peer: unknown address family")
}

// END ttmPeer

func main() {
	host, port := os.Args[1], os.Args[2]
	network := "tcp4"
	if strings.Contains(host, ":") {
		network = "tcp"
	}
	ln, err := net.Listen(network, net.JoinHostPort(host, port))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := &http.Server{
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var ttm string
			if peer, err := ttmPeer(r.Context().Value(connKey{}).(net.Conn)); err == nil {
				ttm = peer.Addr().String() + " " + fmt.Sprint(peer.Port())
			} else {
				ttm = "error " + err.Error()
			}
			fmt.Fprintf(w, "%s\n1345 %s\n", r.RemoteAddr, ttm)
		}),
	}
	fmt.Fprintln(os.Stderr, srv.Serve(ln))
	os.Exit(1)
}
