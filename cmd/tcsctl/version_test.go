package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tcs-dev/tcs/cmd/internal/obstest"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--version", "-version", "version"} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{arg}, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr); code != exitOK {
			t.Fatalf("tcsctl %s: exit %d, %s", arg, code, stderr.String())
		}
		obstest.CheckVersion(t, "tcsctl", stdout.String())
	}
}
