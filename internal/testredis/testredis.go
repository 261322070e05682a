// Package testredis starts a throwaway redis-server for benchmarks that
// compare TCS with the Redis GET a team would otherwise reach for.
package testredis

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Install is how to get the redis-server Start needs.
const Install = "apt-get install -y --no-install-recommends redis-server (or tcs/client/bench-deps.sh)"

// Start starts Debian's redis-server on a free loopback port, with no
// persistence, and returns a client of it with poolSize connections (0:
// go-redis' default); both are stopped when tb ends. A missing
// redis-server fails tb, saying how to install it.
func Start(tb testing.TB, poolSize int) *redis.Client {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatalf("redis-server is not on PATH; install it: %s", Install)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	lis.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start redis-server: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	rdb := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), PoolSize: poolSize})
	tb.Cleanup(func() { rdb.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := rdb.Ping(context.Background()).Err()
		if err == nil {
			return rdb
		}
		select {
		case err := <-exited:
			tb.Fatalf("redis-server exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redis-server on port %d not answering: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
