package backend_test

import (
	"os"
	"testing"

	"github.com/tcs-dev/tcs/internal/testwait"
)

func TestMain(m *testing.M) {
	testwait.WaitBoundParallel(8) // the timeout tests wait on a silent endpoint
	os.Exit(m.Run())
}
