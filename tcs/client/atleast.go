package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/backoff"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// Read-your-writes.
//
// A caller that has just written a tenant through the catalog knows the
// version the write made (the ETag of the REST answer). LookupAtLeast
// returns that version or a newer one, never an older one: from the cache
// when the cached answer is new enough (a hit, as cheap as Lookup's), else
// from a region asked with LookupRequest.min_version. A region whose replica
// has not applied the version yet answers UNAVAILABLE with an ErrorInfo
// naming the version it has (tcs.proto); the lookup then asks the next
// region at once (as it does when a region fails, but without counting
// against the region's circuit breaker: Hooks.Behind), and when every region
// is behind, asks them all again after a backoff (from 20 ms, doubling, up
// to 500 ms), until ctx ends; then it fails with a *TooOldError naming the
// newest version any region had.

// DefaultAtLeastTimeout bounds LookupAtLeast when its ctx has no deadline.
const DefaultAtLeastTimeout = 5 * time.Second

// Backoff between the rounds of a LookupAtLeast that found every region
// behind.
const (
	minAtLeastBackoff = 20 * time.Millisecond
	maxAtLeastBackoff = 500 * time.Millisecond
)

// Error details of a region behind min_version (tcs/lookup: the client does
// not link the server).
const (
	reasonVersionNotReached = "VERSION_NOT_REACHED"
	errorDomain             = "tcs.v1"
)

// ErrTooOld: LookupAtLeast found no region at the version asked for before
// its context ended (see TooOldError).
var ErrTooOld = errors.New("tcs: no region has reached the version asked for")

// TooOldError is the error of a LookupAtLeast that no region could answer
// at MinVersion or newer before its context ended. errors.Is(err, ErrTooOld)
// is true of it.
type TooOldError struct {
	// Hostname is the normalised hostname looked up; TenantID the tenant
	// asked for ("" for any).
	Hostname, TenantID string
	// MinVersion is the version asked for.
	MinVersion int64
	// Best is the newest version of the tenant a region had (0 if none
	// had any), Region the region that had it.
	Best   int64
	Region string
	// Last is the last failure of a region that did not answer at all, if
	// one did not (nil otherwise).
	Last error
}

func (e *TooOldError) Error() string {
	tenant := "its tenant"
	if e.TenantID != "" {
		tenant = "tenant " + e.TenantID
	}
	best := fmt.Sprintf("the newest version of %s a region had was %d (%s)", tenant, e.Best, e.Region)
	if e.Region == "" {
		best = fmt.Sprintf("no region had any version of %s", tenant)
	}
	msg := fmt.Sprintf("%v: lookup %s at version %d or newer: %s", ErrTooOld, e.Hostname, e.MinVersion, best)
	if e.Last != nil {
		msg += fmt.Sprintf("; the last failure: %v", e.Last)
	}
	return msg
}

// Is reports whether target is ErrTooOld.
func (e *TooOldError) Is(target error) bool { return target == ErrTooOld }

// LookupAtLeast is Lookup for a caller that needs the tenant at minVersion
// or newer (read-your-writes: minVersion is the version a catalog write
// returned). Versions count per tenant: minVersion applies to whichever
// tenant owns the hostname, and NOT_FOUND (which has no version) is
// returned as it is; LookupTenantAtLeast, which names the tenant, rules out
// a region that has not yet applied the write that created the tenant or
// claimed the hostname. A hit on a new enough cached answer allocates
// nothing. Otherwise it asks the regions with min_version, moving to the
// next region at once when one is behind and retrying every region with
// backoff, until ctx ends (DefaultAtLeastTimeout when ctx has no deadline):
// then it fails with a *TooOldError naming the newest version seen
// (errors.Is ErrTooOld), or with ErrUnavailable if no region answered at
// all. A minVersion below 1 is Lookup. The answer is cached (unless older
// than what the cache holds, which it never is here: see Monotonic reads).
func (c *Client) LookupAtLeast(ctx context.Context, hostname string, minVersion int64) (*tenant.Tenant, error) {
	if r := c.cache.lookup(hostname); r.s != nil && r.s.seq != 0 && c.cache.fresh(r.s, c.cache.fast()) {
		if t := r.tenant(); t.Version >= minVersion {
			c.hooks.Hit()
			return t, nil
		}
	}
	return c.lookupAtLeast(ctx, hostname, "", minVersion)
}

// LookupTenantAtLeast is LookupAtLeast for a caller that also knows the
// tenant, tenantID, that should own hostname (it just wrote it). A region
// is behind unless it has applied tenantID at minVersion or newer; once it
// has, its answer is returned as it is: tenantID at minVersion or newer, or,
// if that write released the hostname (or deleted the tenant), another
// tenant or ErrNotFound.
func (c *Client) LookupTenantAtLeast(ctx context.Context, hostname, tenantID string, minVersion int64) (*tenant.Tenant, error) {
	if r := c.cache.lookup(hostname); r.s != nil && r.s.seq != 0 && c.cache.fresh(r.s, c.cache.fast()) {
		if t := r.tenant(); t.Version >= minVersion && t.ID == tenantID {
			c.hooks.Hit()
			return t, nil
		}
	}
	if err := tenant.ValidateID(tenantID); err != nil {
		return nil, fmt.Errorf("tcs: LookupTenantAtLeast: tenant id %q %s", tenantID, tenant.ErrorMessage(err)+": "+fieldReason(err))
	}
	return c.lookupAtLeast(ctx, hostname, tenantID, minVersion)
}

// fieldReason returns the reason of a tenant validation error's first field.
func fieldReason(err error) string {
	var te *tenant.Error
	if errors.As(err, &te) && len(te.Fields) > 0 {
		return te.Fields[0].Reason
	}
	return ""
}

// meets reports whether t is tenantID ("" : any) at min or newer.
func meets(t *tenant.Tenant, tenantID string, min int64) bool {
	return t != nil && (tenantID == "" || t.ID == tenantID) && t.Version >= min
}

// lookupAtLeast is LookupAtLeast past the cache hit on the hostname as
// given.
func (c *Client) lookupAtLeast(ctx context.Context, hostname, tenantID string, min int64) (*tenant.Tenant, error) {
	if min < 1 {
		t, _, err := c.LookupMeta(ctx, hostname)
		return t, err
	}
	h, err := tenant.NormalizeHostname(hostname)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %s", ErrInvalidHostname, hostname, tenant.ErrorMessage(err))
	}
	if h != hostname {
		if e, st := c.cache.get(h, c.cache.fast()); st == fresh && meets(e.t, tenantID, min) {
			c.hooks.Hit()
			return e.t, nil
		}
	}
	c.hooks.Miss()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultAtLeastTimeout)
		defer cancel()
	}
	a := &atLeast{c: c, h: h, tenantID: tenantID, min: min}
	wait := backoff.New(minAtLeastBackoff, maxAtLeastBackoff, backoff.UpTo)
	for {
		t, done, err := a.round(ctx)
		if done {
			return t, err
		}
		if ctx.Err() == nil && c.ctx.Err() == nil {
			// Wait for the next round, unless ctx ends first.
			if werr := sleep(ctx, c.ctx, wait.Next()); werr == nil {
				continue
			}
		}
		switch {
		case c.ctx.Err() != nil:
			return nil, ErrClosed
		case errors.Is(ctx.Err(), context.Canceled):
			return nil, ctx.Err()
		}
		return nil, a.giveUp(err)
	}
}

// sleep waits for d, or until ctx or closed ends.
func sleep(ctx context.Context, closed context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-closed.Done():
		return ErrClosed
	}
}

// atLeast is one LookupAtLeast past its cache hit: what its rounds have
// seen.
type atLeast struct {
	c        *Client
	h        string
	tenantID string
	min      int64

	mu         sync.Mutex // the RPCs of a round run concurrently
	best       int64
	bestRegion string
}

// note records that region had the tenant at version.
func (a *atLeast) note(version int64, region string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.bestRegion == "" || version > a.best {
		a.best, a.bestRegion = version, region
	}
}

// giveUp is the error of a lookup whose ctx ended; last is the last
// round's failure.
func (a *atLeast) giveUp(last error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.bestRegion == "" && last != nil && !errors.Is(last, errBehind) {
		return fmt.Errorf("%w: lookup %s at version %d or newer: %v", ErrUnavailable, a.h, a.min, last)
	}
	e := &TooOldError{Hostname: a.h, TenantID: a.tenantID, MinVersion: a.min, Best: a.best, Region: a.bestRegion}
	if last != nil && !errors.Is(last, errBehind) && status.Code(last) != codes.OK {
		if _, _, behind := notReached(last); !behind {
			e.Last = last
		}
	}
	return e
}

// round asks the regions once (see call) and reports whether that settles
// the lookup (done), with its answer; if not, err is the round's last
// failure.
func (a *atLeast) round(ctx context.Context) (t *tenant.Tenant, done bool, err error) {
	c := a.c
	tk := c.cache.begin()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.lookupTimeout)
	defer cancel()
	var got entry
	_, r, err := call(c, ctx, func(ctx context.Context, api tcsv1.TenantContextServiceClient) (*tcsv1.LookupResponse, error) {
		resp, err := api.Lookup(ctx, &tcsv1.LookupRequest{Hostname: a.h, MinVersion: a.min, TenantId: a.tenantID})
		if v, region, ok := notReached(err); ok {
			a.note(v, region)
		}
		return resp, err
	}, func(resp *tcsv1.LookupResponse, r *region) bool {
		t, cerr := tcsv1.TenantFromProto(resp.GetTenant())
		if cerr != nil || t == nil {
			c.log.Error("tcs lookup: bad tenant in answer", "region", r.label(), "hostname", a.h, "err", cerr)
			return false
		}
		region := r.intern(resp.GetRegion())
		if (a.tenantID == "" || t.ID == a.tenantID) && t.Version < a.min {
			// A server that does not know min_version answers what it
			// has: behind.
			a.note(t.Version, region)
			return false
		}
		e := entry{t: t, readAt: c.cache.clock() - int64(max(resp.GetAge().AsDuration(), 0)), region: region}
		if !c.cache.accept(a.h, e) {
			return false // older than a version this client returned: that one is newer still
		}
		got = e
		return true
	})
	switch status.Code(err) {
	case codes.OK:
		c.cache.put(a.h, got, tk)
		t, _, err := c.notOlder(a.h, got.t, Meta{})
		return t, true, err
	case codes.NotFound:
		c.cache.put(a.h, entry{readAt: c.cache.clock(), region: r.label()}, tk)
		return nil, true, ErrNotFound
	case codes.InvalidArgument:
		return nil, true, fmt.Errorf("%w %q: %s", ErrInvalidHostname, a.h, status.Convert(err).Message())
	}
	return nil, false, err
}

// notReached reports whether err is a region's answer that it has not
// reached the version asked for, and if so the version it has and its
// name.
func notReached(err error) (version int64, region string, ok bool) {
	if status.Code(err) != codes.Unavailable {
		return 0, "", false
	}
	for _, d := range status.Convert(err).Details() {
		info, isInfo := d.(*errdetails.ErrorInfo)
		if !isInfo || info.GetReason() != reasonVersionNotReached || info.GetDomain() != errorDomain {
			continue
		}
		v, perr := strconv.ParseInt(info.GetMetadata()["version"], 10, 64)
		if perr != nil {
			return 0, "", false
		}
		return v, info.GetMetadata()["region"], true
	}
	return 0, "", false
}
