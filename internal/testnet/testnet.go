// Package testnet has network fakes for tests.
package testnet

import (
	"net"
	"sync"
	"testing"
)

// SilentListener returns the loopback address of a listener that accepts
// connections and never answers on them: a frozen endpoint (a SIGSTOPped
// process, or a black hole after accept). The listener and its connections
// are closed when tb's test ends.
func SilentListener(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}
