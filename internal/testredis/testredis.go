// Package testredis starts a throwaway redis-server for benchmarks that
// compare TCS with the Redis GET a team would otherwise reach for.
package testredis

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
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
	return StartServer(tb, poolSize).Client
}

// Server is a redis-server of StartServer.
type Server struct {
	// Client is a client of it (on Addr).
	Client *redis.Client
	// Addr is its loopback TCP address, and Socket the path of the Unix
	// socket it also listens on.
	Addr, Socket string
	// Pid is its process's.
	Pid int
}

// StartServer is Start, returning the server's addresses too.
func StartServer(tb testing.TB, poolSize int) *Server {
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
	sock := filepath.Join(tb.TempDir(), "redis.sock")
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--unixsocket", sock, "--unixsocketperm", "700",
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
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: poolSize})
	tb.Cleanup(func() { rdb.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := rdb.Ping(context.Background()).Err()
		if err == nil {
			return &Server{Client: rdb, Addr: addr, Socket: sock, Pid: cmd.Process.Pid}
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
