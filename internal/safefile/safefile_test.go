package safefile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcs-dev/tcs/internal/safefile"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode()
}

func TestCreate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{victim, link, dangling} {
		f, err := safefile.Create(path)
		if err == nil {
			f.Close()
			t.Fatalf("Create(%s) over an existing file or link succeeded", path)
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "exists") {
			t.Errorf("Create(%s): %v; want an error naming it", path, err)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Fatalf("the link's target was changed: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(dir, "nowhere")); !os.IsNotExist(err) {
		t.Fatalf("the dangling link's target was created")
	}
	fresh := filepath.Join(dir, "fresh")
	f, err := safefile.Create(fresh)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	f.Close()
	if m := mode(t, fresh); m.Perm() != 0o600 || !m.IsRegular() {
		t.Fatalf("created file mode %v, want -rw-------", m)
	}
}

func TestOpenExistingAndReadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	if f, err := safefile.OpenExisting(link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		if f != nil {
			f.Close()
		}
		t.Fatalf("OpenExisting(link): %v; want a refusal naming a symbolic link", err)
	}
	if _, err := safefile.ReadFile(link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("ReadFile(link): %v; want a refusal naming a symbolic link", err)
	}
	if _, err := safefile.OpenExisting(dir); err == nil {
		t.Fatalf("OpenExisting(a directory) succeeded")
	}
	f, err := safefile.OpenExisting(file)
	if err != nil {
		t.Fatalf("OpenExisting: %v", err)
	}
	f.Close()
	if m := mode(t, file); m.Perm() != 0o600 {
		t.Fatalf("reopened file mode %v, want 0600", m)
	}
	if b, err := safefile.ReadFile(file); err != nil || string(b) != "data" {
		t.Fatalf("ReadFile = %q, %v", b, err)
	}
}

func TestRename(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	done, target := write("done", "new"), write("target", "old")
	if err := safefile.Rename(done, target, false); err == nil || !strings.Contains(err.Error(), target) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("Rename over an existing file: %v; want an error naming it and --force", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "old" {
		t.Fatalf("target changed to %q without replace", b)
	}
	if err := safefile.Rename(done, target, true); err != nil {
		t.Fatalf("Rename with replace: %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "new" {
		t.Fatalf("target %q after replace", b)
	}
	if _, err := os.Lstat(done); !os.IsNotExist(err) {
		t.Fatalf("source still there after rename")
	}
	other := write("other", "x")
	fresh := filepath.Join(dir, "fresh")
	if err := safefile.Rename(other, fresh, false); err != nil {
		t.Fatalf("Rename to a new name: %v", err)
	}
	if _, err := os.Lstat(other); !os.IsNotExist(err) {
		t.Fatalf("source still there after rename")
	}
}

func TestWriteAtomic(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sub", "state.json")
	for _, data := range []string{"one", "two"} {
		if err := safefile.WriteAtomic(path, []byte(data)); err != nil {
			t.Fatalf("WriteAtomic: %v", err)
		}
		if b, _ := os.ReadFile(path); string(b) != data {
			t.Fatalf("content %q, want %q", b, data)
		}
	}
	if m := mode(t, path); m.Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", m)
	}
	if m := mode(t, filepath.Dir(path)); m.Perm() != 0o700 {
		t.Fatalf("directory mode %v, want 0700", m)
	}
	// A symbolic link at the path is replaced, its target untouched.
	link := filepath.Join(dir, "link")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	if err := safefile.WriteAtomic(link, []byte("new")); err != nil {
		t.Fatalf("WriteAtomic over a link: %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Fatalf("the link's target was written: %q", b)
	}
	if m := mode(t, link); !m.IsRegular() {
		t.Fatalf("link not replaced by a file: %v", m)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}
