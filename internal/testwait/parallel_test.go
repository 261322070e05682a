package testwait_test

import (
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tcs-dev/tcs/internal/testwait"
)

// TestWaitBoundParallel runs this test binary again, as a child, with and
// without -test.parallel: the child calls WaitBoundParallel(7) and reports
// the limit it ends up with.
func TestWaitBoundParallel(t *testing.T) {
	if os.Getenv("TESTWAIT_CHILD") == "1" {
		testwait.WaitBoundParallel(7)
		t.Logf("parallel=%s", flag.Lookup("test.parallel").Value.String())
		return
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "parallel=7"},
		{[]string{"-test.parallel=3"}, "parallel=3"},
	} {
		cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestWaitBoundParallel$", "-test.v"}, tc.args...)...)
		cmd.Env = append(os.Environ(), "TESTWAIT_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child %v: %v\n%s", tc.args, err, out)
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("child %v: want %q in\n%s", tc.args, tc.want, out)
		}
	}
}
