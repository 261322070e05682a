package emulators_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/infra/emulators"
)

func TestStartSNSSQS(t *testing.T) {
	t.Parallel()
	start := time.Now()
	endpoint := emulators.StartSNSSQS(t)
	t.Logf("fauxqs listening at %s after %v", endpoint, time.Since(start))
	if !strings.HasPrefix(endpoint, "http://127.0.0.1:") {
		t.Fatalf("endpoint %q is not on 127.0.0.1", endpoint)
	}
	resp, err := http.Get(endpoint + "/health")
	if err != nil {
		t.Fatalf("GET /health: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "ok") {
		t.Fatalf("GET /health = %d %q", resp.StatusCode, body)
	}

	// It must not be reachable on any other address of this machine.
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(endpoint, "http://"))
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ipnet, ok := a.(*net.IPNet)
		if !ok || ipnet.IP.IsLoopback() || ipnet.IP.IsLinkLocalUnicast() {
			continue
		}
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(ipnet.IP.String(), port), time.Second)
		if err == nil {
			conn.Close()
			t.Errorf("fauxqs accepts connections on %s: it must listen on 127.0.0.1 only", ipnet.IP)
		}
	}
}
