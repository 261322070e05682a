package client_test

import (
	"os"
	"testing"

	"github.com/tcs-dev/tcs/internal/testwait"
)

func TestMain(m *testing.M) {
	// Most tests wait on TTLs, breaker cooldowns and deadlines rather than
	// compute.
	testwait.WaitBoundParallel(8)
	os.Exit(m.Run())
}
