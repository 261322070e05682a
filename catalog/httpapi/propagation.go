package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/tcs-dev/tcs/catalog/propagation"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// Propagation answers GET /v1/tenants/{id}/propagation: how far a tenant's
// change has reached (*propagation.Checker is one).
type Propagation interface {
	// Check asks every live tcs node once.
	Check(ctx context.Context, tenantID string, version int64) (propagation.Status, error)
	// Wait asks until done or ctx ends; then it returns the last status
	// with ctx's error.
	Wait(ctx context.Context, tenantID string, version int64) (propagation.Status, error)
}

// MaxPropagationWait is the longest wait= of GET
// /v1/tenants/{id}/propagation: under the HTTP server's 30 s write timeout
// (internal/httpserve), with room for the answer. Wait longer by asking
// again (tcsctl wait does).
const MaxPropagationWait = 25 * time.Second

// codeNotConfigured: the catalog serves the route but was not given what it
// needs (501).
const codeNotConfigured tenant.Code = "not_configured"

// codeNodesUnavailable: the tcs nodes could not be asked (503); unlike a
// source-of-truth outage, the detail says what failed.
const codeNodesUnavailable tenant.Code = "nodes_unavailable"

// Outcomes of propagation waits (tcs_catalog_propagation_wait_seconds).
const (
	waitDone     = "done"
	waitLagging  = "lagging"
	waitError    = "error"
	waitCanceled = "canceled"
)

// propagationBody is the body of GET /v1/tenants/{id}/propagation.
type propagationBody struct {
	propagation.Status
	// Lagging names who has not reached the version, one line each.
	Lagging []string `json:"lagging"`
}

// tenantPropagation answers how far the tenant's change to version has
// reached. With wait it long-polls: it answers as soon as done, or when the
// wait ends with done false and who lags (200 either way: the answer is the
// status; a client tells from done).
func (s *Server) tenantPropagation(w http.ResponseWriter, r *http.Request) (err error) {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	version, err := strconv.ParseInt(q.Get("version"), 10, 64)
	if err != nil || version < 1 {
		return requestError(codeMalformed, "version", "version must be a whole number of at least 1: the version a write returned (its ETag), such as version=3")
	}
	var wait time.Duration
	if raw := q.Get("wait"); raw != "" {
		wait, err = time.ParseDuration(raw)
		if err != nil || wait < 0 || wait > MaxPropagationWait {
			return requestError(codeMalformed, "wait", "wait must be a duration from 0s to "+MaxPropagationWait.String()+", such as wait=10s")
		}
	}
	if s.propagation == nil {
		return &tenant.Error{Code: codeNotConfigured, Message: "this catalog does not know the tcs nodes (no node registry configured), so it cannot tell how far a change has reached"}
	}
	var st propagation.Status
	if wait > 0 {
		began := s.now()
		defer func() {
			outcome := waitDone
			switch {
			case errors.Is(err, context.Canceled) || r.Context().Err() != nil:
				outcome = waitCanceled
			case err != nil:
				outcome = waitError
			case !st.Done:
				outcome = waitLagging
			}
			s.propagationWaits.WithLabelValues(outcome).Observe(s.now().Sub(began).Seconds())
		}()
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		defer cancel()
		st, err = s.propagation.Wait(ctx, id, version)
		if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
			// The wait ended: answer where it stands, asking once more if
			// it ended before the first answer (a wait shorter than the
			// nodes take to answer).
			if st.TenantID != "" {
				err = nil
			} else {
				st, err = s.propagation.Check(r.Context(), id, version)
			}
		}
	} else {
		st, err = s.propagation.Check(r.Context(), id, version)
	}
	if err != nil {
		if tenant.ErrorCode(err) == tenant.Invalid || errors.Is(err, context.Canceled) {
			return err
		}
		return &tenant.Error{Code: codeNodesUnavailable, Message: "cannot ask the tcs nodes: " + err.Error()}
	}
	body := propagationBody{Status: st, Lagging: st.Lagging()}
	if body.Lagging == nil {
		body.Lagging = []string{}
	}
	writeJSON(w, http.StatusOK, "application/json", body)
	return nil
}
