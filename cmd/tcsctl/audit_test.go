package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/jobrun"
)

// TestAuditListAndVerify: audit lists a tenant's records and the resync
// records (naming the credential that resynced); audit verify --all passes
// on an untouched catalog.
func TestAuditListAndVerify(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	for i, id := range []string{"alpha", "bravo"} {
		s.create(t, sampleTenant(id, i))
	}
	if err := s.patch(t, "alpha", 1, `{"labels":{"tier":"gold"}}`); err != nil {
		t.Fatalf("patch: %v", err)
	}
	if err := s.api.Delete(context.Background(), "bravo", 0); err != nil {
		t.Fatalf("delete: %v", err)
	}
	s.mustTcsctl(t, 0, "resync", "--tenant", "alpha")

	out := s.mustTcsctl(t, 0, "audit", "--tenant", "alpha")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("audit --tenant alpha printed %d lines, want 2:\n%s", len(lines), out)
	}
	var newest catalog.AuditRecord
	if err := json.Unmarshal([]byte(lines[0]), &newest); err != nil || newest.Version != 2 || newest.Hash == "" || newest.PrevHash == "" {
		t.Fatalf("newest record %s (%v); want version 2, chained", lines[0], err)
	}
	if out := s.mustTcsctl(t, 0, "audit", "list", "--tenant", "alpha", "--limit", "1"); strings.Count(out, "\n") != 1 {
		t.Fatalf("--limit 1 printed:\n%s", out)
	}
	out = s.mustTcsctl(t, 0, "audit", "--resync")
	var rec catalog.AuditRecord
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &rec); err != nil || rec.Action != catalog.ActionResync || rec.Actor != "sre" ||
		rec.Resync == nil || len(rec.Resync.Tenants) != 1 || rec.Resync.Tenants[0] != "alpha" {
		t.Fatalf("audit --resync printed %s (%v); want one resync of alpha by sre", out, err)
	}

	out = s.mustTcsctl(t, 0, "audit", "verify", "--all")
	if !strings.Contains(out, "verified 3 chain(s), 5 record(s) (0 written before chaining, not protected): 0 problem(s)") {
		t.Fatalf("audit verify --all:\n%s", out)
	}
	s.mustTcsctl(t, 0, "audit", "verify", "--tenant", "alpha,bravo", "--resync")
	code, _, errOut := s.tcsctl(t, context.Background(), "audit", "verify", "--tenant", "ghost")
	if code != exitError || !strings.Contains(errOut, "ghost") {
		t.Fatalf("verify of an unknown tenant: exit %d\n%s", code, errOut)
	}
	code, _, errOut = s.tcsctl(t, context.Background(), "audit", "verify")
	if code != exitError || !strings.Contains(errOut, "--all") {
		t.Fatalf("verify without a selection: exit %d\n%s", code, errOut)
	}
}

// TestAuditVerifyDetectsTampering: records altered, deleted or reordered in
// the catalog's file make audit verify exit 1, naming tenant and version.
func TestAuditVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{seedRaw: func(tb testing.TB, path string) {
		st, err := bolt.Open(path, bolt.Options{})
		if err != nil {
			tb.Fatal(err)
		}
		ctx := auth.NewContext(context.Background(), auth.Identity{Name: "ops", Role: auth.Admin})
		for _, id := range []string{"alpha", "bravo", "delta", "gamma"} {
			a, err := st.Create(ctx, mustTenant(tb, sampleTenant(id, 1)), "ops")
			if err != nil {
				tb.Fatal(err)
			}
			for range 2 {
				next := a.Clone()
				next.Labels = map[string]string{"v": a.UpdatedAt.String()}
				if a, err = st.Update(ctx, next, a.Version, "ops"); err != nil {
					tb.Fatal(err)
				}
			}
		}
		if _, err := st.Delete(ctx, "gamma", 0, "ops"); err != nil {
			tb.Fatal(err)
		}
		if _, err := st.Resync(ctx, []catalog.ResyncRequest{{ID: "alpha"}}, nil); err != nil {
			tb.Fatal(err)
		}
		if err := st.Close(); err != nil {
			tb.Fatal(err)
		}
		// Tamper with the file as someone with write access to it could.
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			tb.Fatal(err)
		}
		defer db.Close()
		key := func(id string, v uint64) []byte { return binary.BigEndian.AppendUint64(append([]byte(id), 0), v) }
		err = db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket([]byte("audit"))
			altered := strings.Replace(string(b.Get(key("alpha", 2))), `"actor":"ops"`, `"actor":"someone-else"`, 1)
			if err := b.Put(key("alpha", 2), []byte(altered)); err != nil {
				return err
			}
			if err := b.Delete(key("bravo", 2)); err != nil {
				return err
			}
			v2, v3 := b.Get(key("delta", 2)), b.Get(key("delta", 3))
			v2, v3 = append([]byte(nil), v2...), append([]byte(nil), v3...)
			if err := b.Put(key("delta", 2), v3); err != nil {
				return err
			}
			if err := b.Put(key("delta", 3), v2); err != nil {
				return err
			}
			return b.Delete(key("gamma", 4))
		})
		if err != nil {
			tb.Fatal(err)
		}
	}})
	out := s.mustTcsctl(t, exitFinding, "audit", "verify", "--all")
	for _, want := range []string{
		"tenant alpha: version 2: altered",
		"tenant bravo: version 2: versions 2 to 2 missing",
		"tenant delta: version 2: versions 2 to 2 missing",
		"tenant delta: version 2: out of order",
		"tenant gamma: version 4: versions 4 to 4 missing",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("audit verify --all does not report %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, _resyncName) {
		t.Errorf("the untouched resync chain is reported:\n%s", out)
	}
	// Asked for by id, a deleted tenant's version is not served: its
	// newest record must be the delete.
	out = s.mustTcsctl(t, exitFinding, "audit", "verify", "--tenant", "gamma")
	if want := "tenant gamma: version 4: the tenant is deleted but its newest record (version 3, action update) is not its delete"; !strings.Contains(out, want) {
		t.Errorf("audit verify --tenant gamma does not report %q:\n%s", want, out)
	}
	out = s.mustTcsctl(t, exitFinding, "audit", "verify", "--tenant", "alpha", "--json")
	var rep catalog.ChainReport
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &rep); err != nil || rep.Chain != "alpha" || len(rep.Problems) == 0 || rep.Problems[0].Version != 2 {
		t.Fatalf("--json report %s (%v)", out, err)
	}
}

var _resyncName = chainName(catalog.AdminAuditID)

// mustTenant decodes and prepares a tenant document.
func mustTenant(tb testing.TB, doc string) *tenant.Tenant {
	tb.Helper()
	var t tenant.Tenant
	if err := json.Unmarshal([]byte(doc), &t); err != nil {
		tb.Fatal(err)
	}
	if err := tenant.Prepare(&t); err != nil {
		tb.Fatal(err)
	}
	return &t
}

// TestExportFileSafety: export --to creates its files 0600, never through a
// symbolic link, refuses an existing file unless --force, which replaces it
// atomically.
func TestExportFileSafety(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	s.create(t, sampleTenant("alpha", 0))
	dir := t.TempDir()
	ckpt := []string{"--checkpoint", filepath.Join(dir, "ckpt.json")}

	file := filepath.Join(dir, "out.jsonl")
	s.mustTcsctl(t, 0, append([]string{"export", "--to", file}, ckpt...)...)
	if st, err := os.Lstat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v, %v; want mode 0600", st.Mode(), err)
	}

	// An existing file: an error naming it and --force; the file untouched.
	if err := os.WriteFile(file, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := s.tcsctl(t, context.Background(), append([]string{"export", "--to", file}, ckpt...)...)
	if code != exitError || !strings.Contains(errOut, file) || !strings.Contains(errOut, "--force") {
		t.Fatalf("export over an existing file: exit %d\n%s", code, errOut)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep\n" {
		t.Fatalf("the existing file was changed: %q", b)
	}
	s.mustTcsctl(t, 0, append([]string{"export", "--to", file, "--force"}, ckpt...)...)
	if b, _ := os.ReadFile(file); !strings.Contains(string(b), `"id":"alpha"`) {
		t.Fatalf("--force did not replace the file: %q", b)
	}

	// A symbolic link planted at the partial file (or at the file) is
	// never written through.
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.jsonl")
	if err := os.Symlink(victim, other+".partial"); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = s.tcsctl(t, context.Background(), append([]string{"export", "--to", other}, ckpt...)...)
	if code != exitError || !strings.Contains(errOut, other+".partial") {
		t.Fatalf("export through a planted link: exit %d\n%s", code, errOut)
	}
	linked := filepath.Join(dir, "linked.jsonl")
	if err := os.Symlink(victim, linked); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut = s.tcsctl(t, context.Background(), append([]string{"export", "--to", linked}, ckpt...)...); code != exitError || !strings.Contains(errOut, linked) {
		t.Fatalf("export onto a link without --force: exit %d\n%s", code, errOut)
	}
	s.mustTcsctl(t, 0, append([]string{"export", "--to", linked, "--force"}, ckpt...)...)
	if b, _ := os.ReadFile(victim); string(b) != "secret\n" {
		t.Fatalf("the link's target was written: %q", b)
	}
	if st, err := os.Lstat(linked); err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 {
		t.Fatalf("--force onto a link left %v, %v; want a regular 0600 file", st.Mode(), err)
	}
}

// TestExportResumeWithoutPartial: a checkpoint whose partial file is gone is
// an error saying so and how to start again, not a file of zeros.
func TestExportResumeWithoutPartial(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	for i := range 9 {
		s.create(t, sampleTenant("t-"+string(rune('a'+i)), i))
	}
	dir := t.TempDir()
	file, ckpt := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "ckpt.json")
	raw := `{"version":1,"command":"export","key":"` + jobrun.WorkKey("export", s.catalog, file, "false") + `","token":"` +
		exportTokenFor("t-c") + `","offset":10,"done":3,"updated_at":"2026-12-06T09:00:00Z"}`
	if err := os.WriteFile(ckpt, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := s.tcsctl(t, context.Background(), "export", "--to", file, "--checkpoint", ckpt)
	if code != exitError || !strings.Contains(errOut, file+".partial") || !strings.Contains(errOut, "--restart") {
		t.Fatalf("resume without a partial file: exit %d\n%s", code, errOut)
	}
	s.mustTcsctl(t, 0, "export", "--to", file, "--checkpoint", ckpt, "--restart")
	if lines := readLines(t, file); len(lines) != 9 {
		t.Fatalf("export after --restart has %d lines, want 9", len(lines))
	}
}

// exportTokenFor is the catalog's export page token continuing after id.
func exportTokenFor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("x:" + id))
}
