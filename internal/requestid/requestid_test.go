package requestid

import (
	"context"
	"strings"
	"testing"
)

func TestAccept(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, in string
		kept     bool
	}{
		{"uuid", "0b7c8a3e-1f2d-4c5b-9a8e-7d6c5b4a3f2e", true},
		{"trace style", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8", false}, // ';' is not kept
		{"base64", "q83vEjRWeJA=", true},
		{"max length", strings.Repeat("a", MaxLen), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", MaxLen+1), false},
		{"newline (log forging)", "abc\nlevel=ERROR msg=forged", false},
		{"control char", "abc\x00def", false},
		{"space", "abc def", false},
		{"quote", `abc"def`, false},
		{"non-ASCII", "abcé", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := Accept(c.in)
			if c.kept && got != c.in {
				t.Errorf("Accept(%q) = %q, want it kept", c.in, got)
			}
			if !c.kept {
				if got == c.in {
					t.Errorf("Accept(%q) kept it, want a fresh id", c.in)
				}
				if !Valid(got) || len(got) != 32 {
					t.Errorf("Accept(%q) = %q, want 32 hex characters", c.in, got)
				}
			}
		})
	}
	if a, b := New(), New(); a == b {
		t.Errorf("New returned %q twice", a)
	}
	ctx := NewContext(context.Background(), "abc")
	if got := FromContext(ctx); got != "abc" {
		t.Errorf("FromContext = %q, want abc", got)
	}
	if got := FromContext(context.Background()); got != "" {
		t.Errorf("FromContext of a bare context = %q, want empty", got)
	}
}

// A request id is made on every request and call without one.
func BenchmarkAccept(b *testing.B) {
	b.Run("generated", func(b *testing.B) {
		for b.Loop() {
			_ = Accept("")
		}
	})
	b.Run("inbound kept", func(b *testing.B) {
		for b.Loop() {
			_ = Accept("0b7c8a3e-1f2d-4c5b-9a8e-7d6c5b4a3f2e")
		}
	})
}
