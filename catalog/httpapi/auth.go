package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/tcs-dev/tcs/internal/auth"
)

// RouteRoles returns the role each operation needs ("" for the open ones:
// the OpenAPI document, health, readiness and metrics), keyed by
// "METHOD SPEC-PATH" as openapi.json names them. Tests generate their
// authentication tables from it, so no route can be missed.
func RouteRoles() map[string]auth.Role {
	out := make(map[string]auth.Role, len(routes))
	for _, rt := range routes {
		out[rt.Method+" "+rt.SpecPath] = rt.Role
	}
	return out
}

// authenticate establishes the caller of r (bearer token, else verified
// client certificate) and checks it may do what need says. Its errors are
// generic: they never name the token or its owner.
func (s *Server) authenticate(r *http.Request, need auth.Role) (auth.Identity, error) {
	id, err := s.auth.HTTP(r)
	if err != nil {
		msg := "invalid credentials"
		if errors.Is(err, auth.ErrNoCredentials) {
			msg = "missing credentials: send Authorization: Bearer <token> (or a client certificate)"
		}
		return auth.Identity{}, requestError(codeUnauthenticated, "", msg)
	}
	if !id.Role.Allows(need) {
		return auth.Identity{}, requestError(codeForbidden, "", "permission denied: this operation needs role "+string(need))
	}
	return id, nil
}

// actorFrom is the name audit records carry for the request's caller: its
// credential's unique name.
func actorFrom(ctx context.Context) string {
	id, _ := auth.FromContext(ctx)
	return id.Name
}
