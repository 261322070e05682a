package tenant

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestWrapOp(t *testing.T) {
	domain := Errorf(NotFound, "tenant %q not found", "acme")
	io := errors.New("disk on fire")
	for _, c := range []struct {
		name string
		err  error
		want string // "" for nil
		same bool   // returned as it is
	}{
		{"nil", nil, "", true},
		{"domain", domain, domain.Error(), true},
		{"wrapped domain", fmt.Errorf("read: %w", domain), "read: " + domain.Error(), true},
		{"canceled", context.Canceled, "context canceled", true},
		{"deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), "call: context deadline exceeded", true},
		{"other", io, "bolt get tenant acme: disk on fire", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := WrapOp(c.err, "bolt get tenant acme")
			if c.want == "" {
				if got != nil {
					t.Fatalf("WrapOp(nil) = %v", got)
				}
				return
			}
			if got == nil || got.Error() != c.want {
				t.Fatalf("WrapOp(%v) = %v; want %q", c.err, got, c.want)
			}
			if (got == c.err) != c.same {
				t.Errorf("WrapOp(%v) returned as it is: %v; want %v", c.err, got == c.err, c.same)
			}
			if !errors.Is(got, c.err) {
				t.Errorf("WrapOp(%v) = %v does not wrap it", c.err, got)
			}
		})
	}
}
