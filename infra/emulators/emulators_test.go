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

func TestStartDynamoDB(t *testing.T) {
	t.Parallel()
	start := time.Now()
	endpoint := emulators.StartDynamoDB(t)
	t.Logf("DynamoDB Local listening at %s after %v", endpoint, time.Since(start))
	conn, err := net.Dial("tcp", strings.TrimPrefix(endpoint, "http://"))
	if err != nil {
		t.Fatalf("dial %s: %v", endpoint, err)
	}
	conn.Close()
}

func TestStartKinesis(t *testing.T) {
	t.Parallel()
	start := time.Now()
	endpoint := emulators.StartKinesis(t)
	t.Logf("kinesalite listening at %s after %v", endpoint, time.Since(start))
	if !strings.HasPrefix(endpoint, "http://127.0.0.1:") {
		t.Fatalf("endpoint %s, want http://127.0.0.1:<port>", endpoint)
	}
	// kinesalite answers an unsigned POST without a target with an error
	// document: enough to know it is the emulator, not something else.
	resp, err := http.Post(endpoint, "application/x-amz-json-1.1", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("POST %s: %v", endpoint, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "UnknownOperationException") {
		t.Fatalf("POST %s: %s %s, want kinesalite's UnknownOperationException", endpoint, resp.Status, body)
	}
}
