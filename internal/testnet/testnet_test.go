package testnet_test

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/testnet"
)

// echo starts a line echo server and returns its address.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// TestFreezer: bytes pass while thawed, are held while frozen (the reader
// times out), and go through once thawed.
func TestFreezer(t *testing.T) {
	t.Parallel()
	f := testnet.NewFreezer(t, echo(t))
	c, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	roundTrip := func(line string, wait time.Duration) (string, error) {
		if _, err := io.WriteString(c, line); err != nil {
			return "", err
		}
		c.SetReadDeadline(time.Now().Add(wait))
		return r.ReadString('\n')
	}
	if got, err := roundTrip("one\n", 10*time.Second); got != "one\n" || err != nil {
		t.Fatalf("thawed: %q, %v; want the line back", got, err)
	}
	f.Freeze()
	if got, err := roundTrip("two\n", 200*time.Millisecond); err == nil {
		t.Fatalf("frozen: %q came back; want nothing", got)
	}
	f.Thaw()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := r.ReadString('\n'); got != "two\n" || err != nil {
		t.Fatalf("after the thaw: %q, %v; want the held line", got, err)
	}
}
