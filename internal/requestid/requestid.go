// Package requestid names requests so that a caller's report and the
// server's log lines can be matched: a sane inbound id is kept, anything
// else is replaced by a fresh random one.
package requestid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
)

// Header is the HTTP header (and, lower-cased, the gRPC metadata key)
// carrying the id both ways.
const Header = "X-Request-Id"

// MaxLen is the longest inbound id kept.
const MaxLen = 128

// Valid reports whether an inbound id is kept: 1 to MaxLen characters of
// ASCII letters, digits and - _ . : / + = (UUIDs, hex, base64 and the usual
// tracing formats), so that an id cannot forge log lines or flood them.
func Valid(id string) bool {
	if id == "" || len(id) > MaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '/', c == '+', c == '=':
		default:
			return false
		}
	}
	return true
}

// New returns a fresh id: 16 random bytes in hex.
func New() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it crashes the program instead)
	return hex.EncodeToString(b[:])
}

// Accept returns inbound if it is Valid, else New().
func Accept(inbound string) string {
	if Valid(inbound) {
		return inbound
	}
	return New()
}

type ctxKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the id ctx carries, or "".
func FromContext(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}
