package emulators_test

import (
	"net"
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
