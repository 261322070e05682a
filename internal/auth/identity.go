// Package auth is who may call TCS: the roles, the caller identity a server
// establishes (from a bearer token or an mTLS client certificate) and
// carries in the request's context, and the checks every surface shares:
// the credentials file (token digests and certificate allow-list), its
// atomic reload, the gRPC interceptors with their per-method role map, TLS
// configurations that reload their certificates, and the refusal to serve a
// non-loopback address without TLS and authentication.
package auth

import "context"

// Role is what a caller may do.
type Role string

// The roles. Admin implies Reader on the catalog.
const (
	Admin       Role = "admin"        // catalog writes
	Reader      Role = "reader"       // catalog reads
	Lookup      Role = "lookup"       // Lookup, BatchLookup, Watch
	ReplicaScan Role = "replica-scan" // ReplicaAdmin (tcsctl verify/repair reads)
)

// Roles lists every role, in the order of the documentation.
var Roles = []Role{Admin, Reader, Lookup, ReplicaScan}

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool {
	switch r {
	case Admin, Reader, Lookup, ReplicaScan:
		return true
	}
	return false
}

// Allows reports whether a caller holding r may do what needs: the same
// role, or Admin where Reader is needed.
func (r Role) Allows(need Role) bool {
	return r == need || (r == Admin && need == Reader)
}

// Identity is an authenticated caller. Name is unique per person or service
// and is what audit records and per-caller limits use.
type Identity struct {
	Name string
	Role Role
}

type ctxKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity the server established for this request,
// if any.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}
