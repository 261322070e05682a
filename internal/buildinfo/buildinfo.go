// Package buildinfo says which build of TCS is running: the version stamped
// at link time (the Dockerfile sets Version with -ldflags -X), else the
// module version Go recorded, and the VCS revision. Every binary prints it
// for --version and exports it as tcs_build_info.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Version is set at link time:
//
//	go build -ldflags "-X github.com/tcs-dev/tcs/internal/buildinfo.Version=v1.2.3"
//
// Empty means the module version from debug.ReadBuildInfo ("(devel)" for a
// build from a working tree).
var Version string

// Revision is set at link time like Version, for builds without VCS
// information (a Docker build context without .git); empty means
// debug.ReadBuildInfo's vcs.revision.
var Revision string

// Info describes one build.
type Info struct {
	// Version is the stamped version, else the main module's version, else
	// "unknown".
	Version string
	// Revision is the VCS revision the binary was built from ("unknown"
	// without VCS information, e.g. go run or a tree without .git), with
	// "-modified" appended when the tree had uncommitted changes.
	Revision string
	// GoVersion is the Go toolchain that built it.
	GoVersion string
}

// Get returns this binary's build information.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	info := fromBuildInfo(Version, bi, ok)
	if Revision != "" {
		info.Revision = Revision
	}
	return info
}

func fromBuildInfo(stamped string, bi *debug.BuildInfo, ok bool) Info {
	info := Info{Version: stamped, Revision: "unknown", GoVersion: runtime.Version()}
	if !ok || bi == nil {
		if info.Version == "" {
			info.Version = "unknown"
		}
		return info
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	if info.Version == "" {
		info.Version = bi.Main.Version
	}
	if info.Version == "" {
		info.Version = "unknown"
	}
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				info.Revision = s.Value
			}
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && info.Revision != "unknown" {
		info.Revision += "-modified"
	}
	return info
}

// String is the --version line of binary.
func (i Info) String(binary string) string {
	return fmt.Sprintf("%s version %s revision %s %s", binary, i.Version, i.Revision, i.GoVersion)
}

// Collector returns the gauge tcs_build_info{version,revision,goversion},
// always 1, for joining a build onto any other series.
func (i Info) Collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "tcs_build_info",
		Help:        "Always 1; its labels say which build is running (version, VCS revision, Go version).",
		ConstLabels: prometheus.Labels{"version": i.Version, "revision": i.Revision, "goversion": i.GoVersion},
	})
	g.Set(1)
	return g
}
