package emulators_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
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

// TestKinesisSurvivesAbortedRequest: kinesalite itself dies when a client
// hangs up in the middle of sending a request (a Go client whose context
// ends during an upload); the wrapper keeps it alive.
func TestKinesisSurvivesAbortedRequest(t *testing.T) {
	t.Parallel()
	endpoint := emulators.StartKinesis(t)
	addr := strings.TrimPrefix(endpoint, "http://")
	for range 3 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\nContent-Length: 1000\r\n\r\n{\"Limit\":", addr)
		time.Sleep(50 * time.Millisecond) // let the server start reading the body
		conn.Close()
	}
	time.Sleep(200 * time.Millisecond)
	resp, err := http.Post(endpoint, "application/x-amz-json-1.1", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("kinesalite no longer answers after aborted requests: %v", err)
	}
	resp.Body.Close()
}

func TestStartKinesisNotInstalled(t *testing.T) {
	emulators.SetShort(t, false)
	t.Setenv(emulators.DirEnv, t.TempDir())
	_, r := call(t, emulators.StartKinesis)
	if !strings.Contains(r.fatal, "kinesalite is not installed") || !strings.Contains(r.fatal, "infra/emulators/install.sh") {
		t.Fatalf("StartKinesis without an install: %q; want it to fail naming install.sh", r.fatal)
	}
}

// TestStopEndsTheProcess: Stop returns once the emulator's process has
// exited (StartAll's stop, which the emulators command calls, is Stop on
// each).
func TestStopEndsTheProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an emulator")
	}
	t.Parallel()
	p, err := emulators.Start(emulators.Kinesis, 0)
	if err != nil {
		t.Fatal(err)
	}
	pid := p.Pid()
	p.Stop()
	select {
	case <-p.Done():
	default:
		t.Fatal("Stop returned before the process was waited for")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d after Stop: kill 0 = %v, want ESRCH (gone)", pid, err)
	}
}
