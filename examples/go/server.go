// A Go TCP server that asks ttm for the real client of each connection
// through the vendors' getsockopt ABI: getsockopt(fd, SOL_IP, 1345) into
// struct ttm_peer { u16 af (host order); be16 port; u32 addr[4]; }.
//
// Go accepts with raw system calls, so a preloaded libttm.so never sees
// them: only the kernel side reaches Go. It rewrites accept() in-kernel
// where the listener's family can hold the client (RemoteAddr is then
// already right); an IPv6 client behind an IPv4 LB on an AF_INET listener
// ("tcp4", 6to4) is only in getsockopt 1345, which this reads through
// syscall.RawConn.Control on the connection's own descriptor.
//
// Usage: go run server.go [-listen 0.0.0.0:8080] [-n CONNECTIONS]
// For every connection it prints and replies one line:
//
//	accept 198.51.100.1:40000 ttm 2001:db8::7 4242
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"
)

const (
	solIP        = 0    // SOL_IP
	ttmGetPeer   = 1345 // TTM_SO_GET_PEER
	ttmPeerBytes = 20   // sizeof(struct ttm_peer)
)

// ttmPeer returns the client ttm recorded for c, or the errno getsockopt
// failed with: ENOPROTOOPT when neither ttm nor a vendor module answers,
// ENOENT-style errors when it has nothing for this connection.
func ttmPeer(c *net.TCPConn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var peer [ttmPeerBytes]byte
	var callErr error
	err = rc.Control(func(fd uintptr) {
		size := uint32(len(peer))
		_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, solIP, ttmGetPeer,
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
	// af is in host order: read it as the machine does.
	af := *(*uint16)(unsafe.Pointer(&peer[0]))
	port := binary.BigEndian.Uint16(peer[2:4])
	switch af {
	case syscall.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4(*(*[4]byte)(peer[4:8])), port), nil
	case syscall.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(*(*[16]byte)(peer[4:20])), port), nil
	}
	return netip.AddrPort{}, errors.New("ttm_peer: unknown address family")
}

func main() {
	listen := flag.String("listen", "0.0.0.0:8080", "address to listen on (an IPv4 address: AF_INET, \"tcp4\")")
	count := flag.Int("n", -1, "connections to serve, -1 for ever")
	flag.Parse()
	network := "tcp"
	if ap, err := netip.ParseAddrPort(*listen); err == nil && ap.Addr().Is4() {
		network = "tcp4"
	}
	ln, err := net.Listen(network, *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	for served := 0; *count < 0 || served < *count; served++ {
		conn, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		line := "accept " + conn.RemoteAddr().String()
		if peer, err := ttmPeer(conn.(*net.TCPConn)); err == nil {
			line += fmt.Sprintf(" ttm %s %d", peer.Addr(), peer.Port())
		} else {
			line += " ttm error " + err.Error()
		}
		fmt.Println(line)
		fmt.Fprintln(conn, line)
		conn.Close()
	}
}
