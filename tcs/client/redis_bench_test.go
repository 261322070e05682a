package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// redisInstall is how to get the redis-server BenchmarkRedisGET needs.
const redisInstall = "apt-get install -y --no-install-recommends redis-server (or tcs/client/bench-deps.sh)"

// startRedis starts a Debian redis-server on a free loopback port, with no
// persistence, and stops it when b ends.
func startRedis(b *testing.B) *redis.Client {
	b.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		b.Fatalf("redis-server is not on PATH; install it: %s", redisInstall)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	lis.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		b.Fatalf("start redis-server: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	rdb := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))})
	b.Cleanup(func() { rdb.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := rdb.Ping(context.Background()).Err()
		if err == nil {
			return rdb
		}
		select {
		case err := <-exited:
			b.Fatalf("redis-server exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("redis-server on port %d not answering: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkRedisGET is the alternative a team would reach for: the tenant
// document (protobuf, as the lookup API sends it) in a Redis on loopback,
// one GET round trip per lookup from one goroutine (ns/op), measured beside
// a cache hit of this client (hit-ns: one goroutine, hot set of 1,000 of
// 1,000,000 cached hostnames, timed before and after the GETs), and
// redis/hit, their ratio. The GET does not include decoding the document,
// which a Redis-backed lookup would need too.
func BenchmarkRedisGET(b *testing.B) {
	rdb := startRedis(b)
	c, names := benchSetup(b)
	seq := hotSequence(names, 1_000)
	ctx := context.Background()

	doc, err := proto.Marshal(tcsv1.TenantToProto(replicatest.Doc("tenant-0000042", 7, "host-42.tenants.example.com")))
	if err != nil {
		b.Fatal(err)
	}
	const key = "tcs:host:host-42.tenants.example.com"
	if err := rdb.Set(ctx, key, doc, 0).Err(); err != nil {
		b.Fatal(err)
	}
	hits := func() float64 {
		const n = 2_000_000
		start := time.Now()
		for i := range n {
			if _, err := c.Lookup(ctx, seq[i&(len(seq)-1)]); err != nil {
				b.Fatal(err)
			}
		}
		return float64(time.Since(start).Nanoseconds()) / n
	}
	before := hits()
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		got, err := rdb.Get(ctx, key).Bytes()
		if err != nil || len(got) != len(doc) {
			b.Fatal(errors.Join(err, fmt.Errorf("got %d bytes, want %d", len(got), len(doc))))
		}
	}
	get := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	hit := (before + hits()) / 2
	b.ReportMetric(hit, "hit-ns")
	b.ReportMetric(get/hit, "redis/hit")
}
