package emulators

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// kinesaliteJS starts kinesalite bound to loopback; see the file.
//
//go:embed kinesalite.js
var kinesaliteJS string

// StartKinesis starts a private in-memory kinesalite, waits until it accepts
// connections on 127.0.0.1, and stops it when tb ends. It returns the
// endpoint URL. Streams become ACTIVE 50 ms after CreateStream, and splits
// and merges take effect 50 ms after the call.
func StartKinesis(tb testing.TB) (endpoint string) {
	tb.Helper()
	return startPrivate(tb, Kinesis, startKinesis)
}

var sharedKinesis = newShared(Kinesis, startKinesis)

// SharedKinesis returns the endpoint of the test binary's kinesalite: the
// one EndpointsEnv names, or one started on first use (~0.3 s) that Main
// stops. Tests sharing it must use their own streams (Name).
func SharedKinesis(tb testing.TB) (endpoint string) {
	tb.Helper()
	return sharedKinesis.get(tb)
}

func startKinesis() (*Process, error) { return startKinesisOn(0) }

func startKinesisOn(port int) (*Process, error) {
	node, module, err := nodePackage("kinesalite", "index.js")
	if err != nil {
		return nil, err
	}
	port, err = portOrFree(port)
	if err != nil {
		return nil, err
	}
	// The wrapper is run from memory (node -e), so it need not be found on
	// disk; it reads where the module is from the environment.
	cmd := exec.Command(node, "-e", kinesaliteJS)
	cmd.Env = append(os.Environ(),
		"KINESALITE_MODULE="+module,
		fmt.Sprintf("KINESALITE_PORT=%d", port),
	)
	return start(cmd, "kinesalite", port)
}
