package emulators

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// fauxqsWrapper starts fauxqs on 127.0.0.1 (see the file's comment). It is
// embedded rather than run from the source tree so that test binaries find
// it wherever they run.
//
//go:embed fauxqs.js
var fauxqsWrapper string

// StartSNSSQS starts a private fauxqs (SNS and SQS on one port, in memory),
// waits until it accepts connections, and stops it when tb ends. It returns
// the endpoint URL, to be used as the BaseEndpoint of both the SNS and the
// SQS client. Resources are kept per region (taken from the request's
// signature), so clients of several regions can share one emulator.
func StartSNSSQS(tb testing.TB) (endpoint string) {
	tb.Helper()
	p, err := startFauxqs()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Stop)
	return p.Endpoint
}

var sharedFauxqs = newShared(startFauxqs)

// SharedSNSSQS returns the endpoint of the test binary's fauxqs, starting it
// on first use (~0.5 s). Tests sharing it must use their own topic and queue
// names. Main stops it.
func SharedSNSSQS(tb testing.TB) (endpoint string) {
	tb.Helper()
	return sharedFauxqs.endpoint(tb)
}

func startFauxqs() (*Process, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	pkg := filepath.Join(dir, "node", "node_modules", "fauxqs")
	if _, err := os.Stat(filepath.Join(pkg, "package.json")); err != nil {
		return nil, fmt.Errorf("fauxqs is not installed (%s: %v): %s", pkg, errors.Unwrap(err), installHint)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("fauxqs needs node, which is not on PATH (install Node.js 20 or later, then %s)", installHint)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(node, "-e", fauxqsWrapper, pkg, fmt.Sprint(port))
	cmd.Dir = pkg
	return start(cmd, "fauxqs", port)
}
