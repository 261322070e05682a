package httpclient

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tcs-dev/tcs/catalog/propagation"
)

// Propagation is the answer of GET /v1/tenants/{id}/propagation: how far a
// tenant's change has reached, and who lags.
type Propagation struct {
	propagation.Status
	// Lagging names who has not reached the version, one line each.
	Lagging []string `json:"lagging"`
}

// MaxPropagationWait is the longest wait the catalog takes in one request
// (httpapi.MaxPropagationWait).
const MaxPropagationWait = 25 * time.Second

// Propagation asks how far tenant id's change to version has reached. With
// wait > 0 (at most MaxPropagationWait) the catalog answers as soon as it is
// done, or when wait has passed (then Done is false and Lagging names who
// lags).
func (c *Client) Propagation(ctx context.Context, id string, version int64, wait time.Duration) (Propagation, error) {
	q := url.Values{"version": {strconv.FormatInt(version, 10)}}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var p Propagation
	_, err := c.do(ctx, http.MethodGet, tenantPath(id)+"/propagation", q, nil, nil, &p)
	return p, err
}

// propagationMargin is what WaitPropagation leaves of ctx's deadline for the
// catalog's answer to arrive: 250 ms and a tenth of the time left.
func propagationMargin(left time.Duration) time.Duration {
	return 250*time.Millisecond + left/10
}

// WaitPropagation long-polls until tenant id's change to version has
// reached everywhere or ctx ends, in requests of up to MaxPropagationWait,
// each ending a little before ctx's deadline so that the last answer
// arrives. It returns the last answer: Done with a nil error, or not done
// with context.DeadlineExceeded (or ctx's error) when time ran out, its
// Lagging naming who has not reached the version. A request that fails
// ends the wait with its error.
func (c *Client) WaitPropagation(ctx context.Context, id string, version int64) (Propagation, error) {
	var last Propagation
	for {
		wait := MaxPropagationWait
		if dl, ok := ctx.Deadline(); ok {
			left := time.Until(dl)
			wait = min(wait, left-propagationMargin(left))
		}
		if wait <= 0 {
			if last.TenantID == "" {
				// Too little time to wait: ask once.
				p, err := c.Propagation(ctx, id, version, 0)
				if err != nil || p.Done {
					return p, err
				}
				last = p
			}
			return last, context.DeadlineExceeded
		}
		p, err := c.Propagation(ctx, id, version, wait)
		if err != nil {
			if ctx.Err() != nil && last.TenantID != "" {
				return last, ctx.Err()
			}
			return p, err
		}
		last = p
		if p.Done {
			return p, nil
		}
		if err := ctx.Err(); err != nil {
			return last, err
		}
	}
}
