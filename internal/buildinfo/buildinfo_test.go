package buildinfo

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

func TestFromBuildInfo(t *testing.T) {
	t.Parallel()
	vcs := func(rev, modified string) *debug.BuildInfo {
		return &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "v0.3.0"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}}
	}
	for _, c := range []struct {
		name    string
		stamped string
		bi      *debug.BuildInfo
		ok      bool
		want    Info
	}{
		{"module version and clean revision", "", vcs("abc123", "false"), true, Info{"v0.3.0", "abc123", "go1.99.1"}},
		{"modified tree", "", vcs("abc123", "true"), true, Info{"v0.3.0", "abc123-modified", "go1.99.1"}},
		{"stamped version wins", "v1.2.3", vcs("abc123", "false"), true, Info{"v1.2.3", "abc123", "go1.99.1"}},
		{"no vcs", "", &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "(devel)"}}, true, Info{"(devel)", "unknown", "go1.99.1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(c.want, fromBuildInfo(c.stamped, c.bi, c.ok)); diff != "" {
				t.Errorf("fromBuildInfo (-want +got):\n%s", diff)
			}
		})
	}
	if got := fromBuildInfo("", nil, false); got.Version != "unknown" || got.Revision != "unknown" || got.GoVersion == "" {
		t.Errorf("without build info: %+v, want version and revision unknown and the runtime's Go version", got)
	}
}

func TestCollector(t *testing.T) {
	t.Parallel()
	i := Info{Version: "v1.2.3", Revision: "abc", GoVersion: "go1.99.1"}
	reg := prometheus.NewRegistry()
	reg.MustRegister(i.Collector())
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != 1 || families[0].GetName() != "tcs_build_info" || len(families[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v, want one tcs_build_info series", families)
	}
	m := families[0].GetMetric()[0]
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if diff := cmp.Diff(map[string]string{"version": "v1.2.3", "revision": "abc", "goversion": "go1.99.1"}, labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if v := m.GetGauge().GetValue(); v != 1 {
		t.Errorf("value %v, want 1", v)
	}
	if got, want := i.String("tcs"), "tcs version v1.2.3 revision abc go1.99.1"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

// The Dockerfile's -ldflags -X stamp the version and revision into a
// binary.
func TestStampedVersion(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "printversion")
	const pkg = "github.com/tcs-dev/tcs/internal/buildinfo"
	build := exec.Command("go", "build", "-ldflags", "-X "+pkg+".Version=v9.8.7 -X "+pkg+".Revision=0123abc", "-o", bin, "./testdata/printversion")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "printversion version v9.8.7 revision 0123abc " + runtime.Version() + "\n"; string(out) != want {
		t.Errorf("stamped binary printed %q, want %q", out, want)
	}
}
