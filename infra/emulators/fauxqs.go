package emulators

import (
	_ "embed"
	"fmt"
	"os/exec"
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
	return startPrivate(tb, SNSSQS, startFauxqs)
}

var sharedFauxqs = newShared(SNSSQS, startFauxqs)

// SharedSNSSQS returns the endpoint of the test binary's fauxqs: the one
// EndpointsEnv names, or one started on first use (~0.5 s) that Main stops.
// Tests sharing it must use their own topic and queue names (Name).
func SharedSNSSQS(tb testing.TB) (endpoint string) {
	tb.Helper()
	return sharedFauxqs.get(tb)
}

func startFauxqs() (*Process, error) { return startFauxqsOn(0) }

func startFauxqsOn(port int) (*Process, error) {
	node, pkg, err := nodePackage("fauxqs", "package.json")
	if err != nil {
		return nil, err
	}
	port, err = portOrFree(port)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(node, "-e", fauxqsWrapper, pkg, fmt.Sprint(port))
	cmd.Dir = pkg
	return start(cmd, "fauxqs", port)
}
