// Package e2e_test runs `make run-aws-local`'s script — the AWS topology on
// local emulators, every binary a separate process — and drives it with
// tcsctl as a user would: the one test of the real binaries talking to each
// other across processes on the AWS backends.
package e2e_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("no go.mod in %s", dir)
	}
	return dir
}

// TestRunAWSLocal starts infra/run-aws-local.sh on free ports, writes a
// tenant through the catalog, waits for every region to serve it (tcsctl
// lookup), checks that verify finds the regions clean, then stops the script
// with SIGINT as Ctrl-C would and checks that everything it started exited.
func TestRunAWSLocal(t *testing.T) {
	root := repoRoot(t)
	p := map[string]int{}
	for _, name := range []string{"ddb", "kin", "sqs", "cat", "r1", "r2", "r3"} {
		p[name] = freePort(t)
	}
	regions := fmt.Sprintf("us-east-1=127.0.0.1:%d,eu-west-1=127.0.0.1:%d,ap-southeast-2=127.0.0.1:%d", p["r1"], p["r2"], p["r3"])
	catalog := fmt.Sprintf("127.0.0.1:%d", p["cat"])
	logs := t.TempDir()

	cmd := exec.Command("bash", filepath.Join(root, "infra/run-aws-local.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("DYNAMODB_PORT=%d", p["ddb"]), fmt.Sprintf("KINESIS_PORT=%d", p["kin"]), fmt.Sprintf("SNSSQS_PORT=%d", p["sqs"]),
		"CATALOG_ADDR="+catalog, "REGIONS="+regions, "LOGS="+logs, "TCS_AWS_PREFIX=e2e",
		"TCS_ADMIN_TOKEN=adm", "TCS_READER_TOKEN=rdr")
	// Its own process group, so that the test can signal it (and its
	// children) like a terminal's Ctrl-C does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var out bytes.Buffer
	banner := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		seen := false
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if !seen && strings.Contains(sc.Text(), "TCS is running on the AWS backends") {
				seen = true
				close(banner)
			}
		}
		exited <- cmd.Wait()
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	dump := func() string {
		var b strings.Builder
		fmt.Fprintf(&b, "stdout:\n%s\nstderr:\n%s\n", out.String(), stderr.String())
		entries, _ := os.ReadDir(logs)
		for _, e := range entries {
			data, _ := os.ReadFile(filepath.Join(logs, e.Name()))
			if len(data) > 3000 {
				data = data[len(data)-3000:]
			}
			fmt.Fprintf(&b, "--- %s:\n%s\n", e.Name(), data)
		}
		return b.String()
	}
	select {
	case <-banner:
	case err := <-exited:
		stopped = true
		t.Fatalf("run-aws-local.sh exited before it was ready: %v\n%s", err, dump())
	case <-time.After(5 * time.Minute):
		t.Fatalf("run-aws-local.sh not ready within 5 minutes\n%s", dump())
	}

	// A write through the catalog process...
	body := `{"id":"acme","hostnames":["acme.example.com"]}`
	req, _ := http.NewRequest("POST", "http://"+catalog+"/v1/tenants", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer adm")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("create: %v\n%s", err, dump())
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", res.StatusCode, b)
	}

	// ...reaches every region's tcs process, through Kinesis and the
	// appliers' processes; tcsctl is the client.
	tcsctl := filepath.Join(root, ".bin", "tcsctl")
	env := append(os.Environ(), "TCS_CATALOG_URL=http://"+catalog, "TCS_REGIONS="+regions, "TCS_ADMIN_TOKEN=adm")
	for _, r := range []string{"us-east-1", "eu-west-1", "ap-southeast-2"} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			c := exec.Command(tcsctl, "lookup", "acme.example.com", "--region", r)
			c.Env = env
			got, err := c.CombinedOutput()
			if err == nil && strings.Contains(string(got), `"id": "acme"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never served acme: %v %s\n%s", r, err, got, dump())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	c := exec.Command(tcsctl, "verify")
	c.Env = env
	if got, err := c.CombinedOutput(); err != nil || !strings.Contains(string(got), "clean") {
		t.Errorf("tcsctl verify: %v\n%s", err, got)
	}

	// Ctrl-C stops everything; tcs nodes remove their queues first (the
	// script keeps the emulators up until the binaries are gone).
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		stopped = true
	case <-time.After(2 * time.Minute):
		t.Fatalf("run-aws-local.sh did not stop within 2 minutes of SIGINT\n%s", dump())
	}
	for _, r := range []string{"us-east-1", "eu-west-1", "ap-southeast-2"} {
		data, _ := os.ReadFile(filepath.Join(logs, "tcs-"+r+".log"))
		if !bytes.Contains(data, []byte("removed the invalidation queue")) {
			t.Errorf("tcs %s did not remove its queue at the stop:\n%s", r, data)
		}
	}
	// Nothing it started still listens.
	for name, port := range p {
		if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond); err == nil {
			conn.Close()
			t.Errorf("%s port %d still accepts connections after the stop", name, port)
		}
	}
}
