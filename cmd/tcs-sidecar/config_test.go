package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/cmd/internal/configtest"
	"github.com/tcs-dev/tcs/cmd/internal/regionlist"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/tcs/client"
)

// defaultConfig is what parseConfig makes of no flags and an empty
// environment: what works beside make run.
func defaultConfig() *config {
	rs, _ := regionlist.Parse(regionlist.Default)
	return &config{
		HTTPAddr: DefaultHTTPAddr, GRPCAddr: DefaultGRPCAddr, Regions: rs, Token: auth.DevLookupToken,
		DrainDelay: DefaultDrainDelay, CacheSize: client.DefaultCacheSize, TTL: client.DefaultTTL, NegativeTTL: client.DefaultNegativeTTL,
		MaxStale: client.DefaultMaxStale, LookupTimeout: client.DefaultLookupTimeout, Obs: configtest.DefaultObs(""),
	}
}

var cmpConfig = cmpopts.IgnoreUnexported(cmdutil.Flags{})

func TestParseConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want func(*config)
	}{
		{"defaults", nil, nil, func(*config) {}},
		{"flags", []string{"--http-addr", "localhost:8000", "--grpc-addr", "none", "--unix-socket", "/run/tcs.sock", "--regions", "eu-west-1=[::1]:9002",
			"--drain-delay", "0s", "--busy-poll", "50us", "--cache-size", "10", "--ttl", "1m", "--negative-ttl", "0s", "--max-stale", "0s", "--lookup-timeout", "250ms"}, nil,
			func(c *config) {
				c.HTTPAddr, c.GRPCAddr, c.UnixSocket = "localhost:8000", "", "/run/tcs.sock"
				c.Regions = []regionlist.Region{{Name: "eu-west-1", Addr: "[::1]:9002"}}
				c.BusyPoll = 50 * time.Microsecond
				c.DrainDelay, c.CacheSize, c.TTL, c.NegativeTTL, c.MaxStale, c.LookupTimeout = 0, 10, time.Minute, 0, 0, 250*time.Millisecond
			}},
		{"environment", nil, map[string]string{"TCS_SIDECAR_HTTP_ADDR": "127.0.0.1:1", "TCS_SIDECAR_GRPC_ADDR": "127.0.0.1:2", "TCS_SIDECAR_UNIX_SOCKET": "/s",
			"TCS_REGIONS": "a=127.0.0.1:5", "TCS_LOOKUP_TOKEN": "my-lookup-token", "TCS_SIDECAR_BUSY_POLL": "1ms"},
			func(c *config) {
				c.BusyPoll = time.Millisecond
				c.HTTPAddr, c.GRPCAddr, c.UnixSocket = "127.0.0.1:1", "127.0.0.1:2", "/s"
				c.Regions, c.Token = []regionlist.Region{{Name: "a", Addr: "127.0.0.1:5"}}, "my-lookup-token"
			}},
		{"remote regions get no development token", []string{"--regions", "us-east-1=tcs.us-east-1.internal:9001", "--tls"}, nil,
			func(c *config) {
				c.Regions, c.TLS, c.Token = []regionlist.Region{{Name: "us-east-1", Addr: "tcs.us-east-1.internal:9001"}}, true, ""
			}},
		{"ca file implies TLS", []string{"--ca-file", "/ca.pem"}, nil, func(c *config) { c.CAFile, c.TLS = "/ca.pem", true }},
		{"non-loopback with --insecure-i-know", []string{"--http-addr", "0.0.0.0:7070", "--insecure-i-know", "--reflection"}, nil,
			func(c *config) { c.HTTPAddr, c.Insecure, c.Reflection = "0.0.0.0:7070", true, true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConfig(tc.args, configtest.Env(tc.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			want := defaultConfig()
			tc.want(want)
			if d := cmp.Diff(want, got, cmpConfig); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad regions", []string{"--regions", "us-east-1"}, nil, `--regions: "us-east-1" is not REGION=HOST:PORT`},
		{"bad regions env", nil, map[string]string{"TCS_REGIONS": "a=h:1,a=h:2"}, "--regions: region a listed twice"},
		{"non-loopback http", []string{"--http-addr", "0.0.0.0:7070"}, nil, "refusing to serve --http-addr 0.0.0.0:7070"},
		{"non-loopback grpc", []string{"--grpc-addr", ":7071"}, nil, "refusing to serve --grpc-addr :7071"},
		{"nothing to serve", []string{"--http-addr", "none", "--grpc-addr", "none"}, nil, "nothing to serve"},
		{"same port", []string{"--http-addr", "127.0.0.1:7000", "--grpc-addr", "127.0.0.1:7000"}, nil, "give each its own port"},
		{"token in clear", []string{"--regions", "a=tcs.internal:9001"}, map[string]string{"TCS_LOOKUP_TOKEN": "t"}, "TCS_LOOKUP_TOKEN is set but the regions are reached in plaintext"},
		{"drain delay", []string{"--drain-delay", "-1s"}, nil, "--drain-delay -1s"},
		{"lookup timeout", []string{"--lookup-timeout", "0s"}, nil, "--lookup-timeout 0s"},
		{"busy poll negative", []string{"--busy-poll", "-1us"}, nil, "--busy-poll -1µs: want 0 (off) to 10ms"},
		{"busy poll too long", []string{"--busy-poll", "1s"}, nil, "--busy-poll 1s: want 0 (off) to 10ms"},
		{"busy poll env", nil, map[string]string{"TCS_SIDECAR_BUSY_POLL": "fast"}, `TCS_SIDECAR_BUSY_POLL "fast": want a duration`},
		{"ttl", []string{"--ttl", "0s"}, nil, "--ttl 0s"},
		{"log level", []string{"--log-level", "loud"}, nil, `--log-level "loud"`},
		{"probe path", []string{"--probe", "readyz"}, nil, `--probe "readyz": want a path`},
		{"probe nowhere", []string{"--probe", "/readyz", "--http-addr", "none"}, nil, "--http-addr or --unix-socket to reach it on"},
		{"arguments", []string{"extra"}, nil, `unexpected arguments ["extra"]`},
		{"unknown flag", []string{"--metrics-addr", ":9"}, nil, "flag provided but not defined: -metrics-addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(tc.args, configtest.Env(tc.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseConfig = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestParseConfigVersionAndHelp(t *testing.T) {
	t.Parallel()
	c, err := parseConfig([]string{"--version", "--regions", "bad"}, configtest.Env(nil), io.Discard)
	if err != nil || !c.Version {
		t.Errorf("--version: %+v %v (nothing else is checked)", c, err)
	}
	if _, err := parseConfig([]string{"--help"}, configtest.Env(nil), io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
}

func TestClientTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	for _, tc := range []struct{ file, want string }{
		{filepath.Join(dir, "missing.pem"), "--ca-file: open"},
		{notPEM, "no PEM certificate in it"},
	} {
		c, err := parseConfig([]string{"--ca-file", tc.file}, configtest.Env(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.clientOptions(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--ca-file %s: %v, want %q", tc.file, err, tc.want)
		}
	}
	c, _ := parseConfig([]string{"--tls"}, configtest.Env(nil), io.Discard)
	if cfg, err := c.clientTLS(); err != nil || cfg == nil || cfg.RootCAs != nil {
		t.Errorf("--tls: %v %v, want the system's roots", cfg, err)
	}
}

// TestUnixSocketRefusesAFile: --unix-socket replaces a stale socket but
// never another file.
func TestUnixSocketRefusesAFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "not-a-socket")
	os.WriteFile(path, []byte("data"), 0o600)
	if _, err := listenUnix(path); err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Errorf("listenUnix on a file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Error("the file was touched")
	}
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := listenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	// A socket a killed sidecar left behind: the file stays without its
	// listener.
	ln.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = listenUnix(sock)
	if err != nil {
		t.Fatalf("a stale socket was not replaced: %v", err)
	}
	ln.Close()
}
