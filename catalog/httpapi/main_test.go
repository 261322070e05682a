package httpapi

import (
	"os"
	"testing"

	"github.com/tcs-dev/tcs/internal/testwait"
)

func TestMain(m *testing.M) {
	testwait.WaitBoundParallel(8) // the frozen-store tests wait out store timeouts
	os.Exit(m.Run())
}
