package testdeps_test

import (
	"testing"

	"github.com/tcs-dev/tcs/internal/testdeps"
)

func TestMatches(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		dep, prefix string
		want        bool
	}{
		{"github.com/aws/aws-sdk-go-v2/aws", "github.com/aws/", true},
		{"github.com/awsx/y", "github.com/aws/", false},
		{"m/streamer", "m/streamer", true},
		{"m/streamer/kinesis", "m/streamer", true},
		{"m/streamerx", "m/streamer", false},
		{"m/catalog", "m/catalog/bolt", false},
	} {
		if got := testdeps.Matches(c.dep, c.prefix); got != c.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", c.dep, c.prefix, got, c.want)
		}
	}
}

// TestForbid: this package links the standard library's testing, and
// nothing of the AWS SDK.
func TestForbid(t *testing.T) {
	t.Parallel()
	testdeps.Forbid(t, "github.com/aws/")
	ft := &fakeT{T: t}
	testdeps.Forbid(ft, "testing")
	if !ft.failed {
		t.Error("Forbid(\"testing\") did not fail for a package that links it")
	}
}

type fakeT struct {
	*testing.T
	failed bool
}

func (f *fakeT) Errorf(string, ...any) { f.failed = true }
