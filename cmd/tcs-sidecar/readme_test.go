package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tcs-dev/tcs/cmd/internal/configtest"
)

// TestReadmeListsEveryFlag: the README's sidecar section names every flag
// tcs-sidecar has, and no flag it does not have.
func TestReadmeListsEveryFlag(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(readme, []byte("## Sidecar (`tcs-sidecar`)"))
	if start < 0 {
		t.Fatal("README has no sidecar section")
	}
	section := string(readme[start:])
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	var help bytes.Buffer
	parseConfig([]string{"--help"}, configtest.Env(nil), &help)
	have := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(help.String(), -1) {
		have[m[1]] = true
		if !strings.Contains(section, "`--"+m[1]+"`") {
			t.Errorf("the README's sidecar section does not name --%s", m[1])
		}
	}
	if len(have) < 10 {
		t.Fatalf("found only %d flags in the help:\n%s", len(have), help.String())
	}
	for _, m := range regexp.MustCompile("`--([a-z-]+)`").FindAllStringSubmatch(section, -1) {
		if !have[m[1]] {
			t.Errorf("the README's sidecar section names --%s, which tcs-sidecar does not have", m[1])
		}
	}
}

// readmeBlocks returns the code blocks of lang in the README's sidecar
// section, in order.
func readmeBlocks(t *testing.T, lang string) []string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme[bytes.Index(readme, []byte("## Sidecar (`tcs-sidecar`)")):])
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllStringSubmatch(section, -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// TestReadmeClientSnippets runs the README's Python (over TCP and over the
// Unix socket) and Node.js snippets against a sidecar: a tenant, an
// unknown hostname (None, null) and a bad one (the error naming the
// problem).
func TestReadmeClientSnippets(t *testing.T) {
	t.Parallel()
	for _, bin := range []string{"python3", "node"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not on PATH: .ci/run installs python3 (apt-get), infra/emulators/install.sh needs node", bin)
		}
	}
	py, js := readmeBlocks(t, "python"), readmeBlocks(t, "js")
	if len(py) != 2 || len(js) != 1 {
		t.Fatalf("the README's sidecar section has %d Python and %d Node.js snippets, want 2 and 1", len(py), len(js))
	}
	sys := startSystem(t)
	sock := filepath.Join(t.TempDir(), "tcs.sock")
	sc := startSidecar(t, sys, "--unix-socket", sock)
	created := sys.create(t, hooliDoc)
	sc.waitReady(t)
	sc.waitVersion(t, "hooli.example.com", created.Version)
	host, port, err := net.SplitHostPort(sc.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	replace := func(snippet, old, new string) string {
		t.Helper()
		if !strings.Contains(snippet, old) {
			t.Fatalf("the snippet has no %q to point at the test's sidecar:\n%s", old, snippet)
		}
		return strings.ReplaceAll(snippet, old, new)
	}
	const pyCheck = `
t = tenant_for("hooli.example.com")
assert t["id"] == "hooli" and t["database"]["host"] == "db-7.internal", t
assert tenant_for("nobody.example.com") is None
try:
    tenant_for("bad_host!.example.com")
    raise SystemExit("no error for a bad hostname")
except RuntimeError as e:
    assert str(e).startswith("400 urn:tcs:problem:malformed_request: invalid hostname"), e
print("ok")
`
	const jsCheck = `
(async () => {
  const t = await tenantFor("hooli.example.com");
  if (t.id !== "hooli" || t.database.host !== "db-7.internal") throw new Error("got " + JSON.stringify(t));
  if (await tenantFor("nobody.example.com") !== null) throw new Error("an unknown hostname is not null");
  let err;
  try { await tenantFor("bad_host!.example.com"); } catch (e) { err = e; }
  if (!err || !err.message.startsWith("400 urn:tcs:problem:malformed_request: invalid hostname")) throw new Error("a bad hostname: " + err);
  console.log("ok");
})().catch((e) => { console.error(e); process.exit(1); });
`
	tcpPy := replace(py[0], `"127.0.0.1", 7070`, `"`+host+`", `+port)
	for _, tc := range []struct {
		name, bin, flag, script string
	}{
		{"python tcp", "python3", "-c", tcpPy + pyCheck},
		{"python unix", "python3", "-c", tcpPy + replace(py[1], "/run/tcs/tcs.sock", sock) + pyCheck},
		{"node", "node", "-e", replace(js[0], "127.0.0.1:7070", sc.HTTP) + jsCheck},
	} {
		out, err := exec.Command(tc.bin, tc.flag, tc.script).CombinedOutput()
		if err != nil || string(out) != "ok\n" {
			t.Errorf("%s: %v\n%s\nscript:\n%s", tc.name, err, out, tc.script)
		}
	}
}
