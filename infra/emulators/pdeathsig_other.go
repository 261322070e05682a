//go:build !linux

package emulators

import "os/exec"

func setParentDeathSignal(*exec.Cmd) {}
