// Package freeport hands out loopback TCP ports for processes a test or a
// local topology is about to start.
//
// Asking the kernel for port 0 and closing the listener is not enough when
// several ports are picked before anything binds them: the kernel may hand
// out the same port twice, and every outgoing connection made meanwhile (SDK
// clients talking to emulators) takes its local port from the same ephemeral
// range, so it can grab a port a child is about to listen on, or one a killed
// process is about to listen on again. Port therefore picks below the
// ephemeral range when it can, and never returns a port twice in a process.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the lowest port Port picks: above the well-known and the common
// registered service ports.
const lowest = 20000

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Port returns a loopback port that was free a moment ago and that this
// process has not been given before.
func Port() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	if hi := ephemeralLow() - 1; hi > lowest {
		for range 200 {
			p := lowest + rand.IntN(hi-lowest+1)
			if given[p] || !free(p) {
				continue
			}
			given[p] = true
			return p, nil
		}
	}
	// No room below the ephemeral range (or it cannot be read): let the
	// kernel choose, still never twice.
	for range 200 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !given[p] {
			given[p] = true
			return p, nil
		}
	}
	return 0, fmt.Errorf("find a free port: 200 tries gave only ports handed out before")
}

// Block returns the first of n consecutive loopback ports that were all
// free a moment ago and that this process has not been given before (for a
// script that numbers its ports from one base, as run-aws-local's
// METRICS_PORT). It picks below the ephemeral range, as Port does.
func Block(n int) (int, error) {
	if n < 1 {
		return 0, fmt.Errorf("freeport.Block(%d): want at least one port", n)
	}
	mu.Lock()
	defer mu.Unlock()
	hi := ephemeralLow() - n
	if hi <= lowest {
		hi = 65535 - n
	}
	for range 200 {
		base := lowest + rand.IntN(hi-lowest+1)
		ok := true
		for p := base; p < base+n && ok; p++ {
			ok = !given[p] && free(p)
		}
		if !ok {
			continue
		}
		for p := base; p < base+n; p++ {
			given[p] = true
		}
		return base, nil
	}
	return 0, fmt.Errorf("find %d consecutive free ports: 200 tries failed", n)
}

// Addr is Port as a "127.0.0.1:port" address.
func Addr() (string, error) {
	p, err := Port()
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(p), nil
}

func free(p int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// ephemeralLow is the lowest port of Linux's ephemeral range, or 0 when it
// cannot be read (another OS).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return lo
}
