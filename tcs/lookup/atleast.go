package lookup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/catalog/tenant"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/cache"
)

// Read-your-writes: a Lookup with min_version (tcs.proto,
// LookupRequest.min_version).
//
// The node answers from its cache when the fresh entry is the tenant asked
// for (tenant_id, else any) at min_version or newer; otherwise from a read
// of its replica that began after the call arrived, through the cache
// (cache.LookupAtLeast: shared with concurrent misses of the hostname, and
// installed by the cache's rules, so no entry goes back to an older
// version). If that answer is still older, or the replica could not be read
// and what the cache kept is older, the region is behind the caller's
// write: the call fails with UNAVAILABLE, the version the region has in its
// message, in the trailer tcs-version (with tcs-region) and in an
// errdetails.ErrorInfo detail (ReasonVersionNotReached). UNAVAILABLE because
// that is the code gRPC's retry policies and every client's failover
// already treat as "try again, here later or elsewhere now", which is what
// the caller should do: the replica catches up on its own. (FAILED_PRECONDITION
// says "do not retry until the system is fixed"; ABORTED is for conflicts
// between writers.) The detail lets a client tell this answer from a region
// that is down, and not count it against the region's health.
//
// With tenant_id, an answer that is another tenant or NOT_FOUND is checked
// against the replica's document of tenant_id (tombstones included): below
// min_version, the region is behind (the version named is that document's,
// 0 if it has none); at or above it, the hostname is read once more (after
// that check, so the read sees that version's claims) and its answer is
// given as it is: the write moved the hostname away or deleted the tenant.
// Without tenant_id a NOT_FOUND has no version to compare and is given as
// it is.
//
// Every read a min_version lookup makes (the hostname's, the tenant
// document's) takes a token of the miss budget, as a lookup of a hostname
// the node knows no tenant of does (see limits.go): min_version lets a
// caller force a replica read of a hot hostname on every call.

// Trailers and details of a min_version lookup the region is behind.
const (
	// TrailerVersion is the version of the tenant the region has (0: none),
	// as a decimal integer.
	TrailerVersion = "tcs-version"
	// TrailerRegion is the region that answered.
	TrailerRegion = "tcs-region"
	// ReasonVersionNotReached is the errdetails.ErrorInfo reason; its
	// metadata holds "version", "min_version", "tenant_id" and "region".
	ReasonVersionNotReached = "VERSION_NOT_REACHED"
	// ErrorDomain is the errdetails.ErrorInfo domain of this API's errors.
	ErrorDomain = "tcs.v1"
)

// min_version lookup outcomes, the label values of
// tcs_lookup_min_version_lookups_total (a fixed set).
const (
	atLeastCache  = "cache"   // a fresh cache entry was new enough
	atLeastRead   = "read"    // answered after a replica read
	atLeastTooOld = "too_old" // the region is behind: UNAVAILABLE with its version
	atLeastFailed = "failed"  // anything else: invalid, refused, replica unreadable with nothing to compare
)

var atLeastOutcomes = []string{atLeastCache, atLeastRead, atLeastTooOld, atLeastFailed}

// behindError is the answer of a min_version lookup that the region cannot
// give: it has tenant at version have, below want.
type behindError struct {
	region   string
	tenantID string // "" when the caller named no tenant and the region has none for the hostname
	have     int64
	want     int64
	// unreadable says the replica could not be read: have is what the
	// node's cache kept.
	unreadable bool
}

func (e *behindError) Error() string {
	what := fmt.Sprintf("tenant %s at version %d", e.tenantID, e.have)
	if e.have == 0 {
		what = fmt.Sprintf("no version of tenant %s", e.tenantID)
	}
	why := "its replica has not applied that version yet"
	if e.unreadable {
		why = "its replica could not be read, and that is the newest it kept"
	}
	return fmt.Sprintf("region %s has %s, below min_version %d: %s; retry, or ask another region", e.region, what, e.want, why)
}

// status returns the status a caller sees: UNAVAILABLE with an ErrorInfo.
func (e *behindError) status() *status.Status {
	st := status.New(codes.Unavailable, e.Error())
	if d, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason: ReasonVersionNotReached,
		Domain: ErrorDomain,
		Metadata: map[string]string{
			"version":     strconv.FormatInt(e.have, 10),
			"min_version": strconv.FormatInt(e.want, 10),
			"tenant_id":   e.tenantID,
			"region":      e.region,
		},
	}); err == nil {
		return d
	}
	return st
}

// trailer sets the call's trailer to name the version the region has
// (outside a gRPC call it does nothing).
func (e *behindError) trailer(ctx context.Context) {
	_ = grpc.SetTrailer(ctx, metadata.Pairs(TrailerVersion, strconv.FormatInt(e.have, 10), TrailerRegion, e.region))
}

// checkAtLeast checks the read-your-writes fields of req.
func checkAtLeast(req *tcsv1.LookupRequest) error {
	var fields []tenant.FieldError
	if req.GetMinVersion() < 0 {
		fields = append(fields, tenant.FieldError{Field: "min_version", Reason: fmt.Sprintf("must not be negative; got %d", req.GetMinVersion())})
	}
	if id := req.GetTenantId(); id != "" {
		if err := tenant.ValidateID(id); err != nil {
			var te *tenant.Error
			if errors.As(err, &te) {
				for _, f := range te.Fields {
					fields = append(fields, tenant.FieldError{Field: "tenant_id", Reason: f.Reason})
				}
			}
		}
	}
	return tenant.FieldErrors(fields)
}

// lookupAtLeast answers a Lookup with min_version (see the comment above)
// for caller c (whose limiters are cl), and counts its outcome.
func (s *Server) lookupAtLeast(ctx context.Context, req *tcsv1.LookupRequest, c Caller, cl *callerLimits) (cache.Result, error) {
	res, outcome, err := s.atLeast(ctx, req, c, cl)
	s.m.atLeast[outcome].Inc()
	return res, err
}

func (s *Server) atLeast(ctx context.Context, req *tcsv1.LookupRequest, c Caller, cl *callerLimits) (cache.Result, string, error) {
	if err := checkAtLeast(req); err != nil {
		return cache.Result{}, atLeastFailed, err
	}
	h, err := s.normalize(req.GetHostname())
	if err != nil {
		return cache.Result{}, atLeastFailed, err
	}
	w := cache.Want{TenantID: req.GetTenantId(), MinVersion: req.GetMinVersion()}
	admit := s.admit(c, cl)
	res, hit, err := s.cache.LookupAtLeast(ctx, h, w, admit)
	switch {
	case hit:
		return res, atLeastCache, nil
	case w.Met(res, err):
		return res, atLeastRead, nil
	case err != nil && tenant.ErrorCode(err) != tenant.NotFound:
		return res, atLeastFailed, err // refused, unreadable with nothing kept, or the caller gone
	case err == nil && (w.TenantID == "" || res.TenantID == w.TenantID):
		// The tenant, older than the caller's write.
		return res, atLeastTooOld, s.behind(res.TenantID, res.Version, w.MinVersion, res.Stale)
	case w.TenantID == "":
		return res, atLeastRead, err // NOT_FOUND, as it is
	}

	// Another tenant, or NOT_FOUND, where the caller expects w.TenantID:
	// has the region applied the caller's write?
	if err := admit(false); err != nil {
		return cache.Result{}, atLeastFailed, err
	}
	have, err := s.tenantVersion(w.TenantID)
	if err != nil {
		return cache.Result{}, atLeastFailed, err
	}
	if have < w.MinVersion {
		return cache.Result{}, atLeastTooOld, s.behind(w.TenantID, have, w.MinVersion, false)
	}
	// It has: the hostname's answer read from now on is that version's or
	// newer (the read before may have begun before the write was applied).
	res, hit, err = s.cache.LookupAtLeast(ctx, h, w, admit)
	switch {
	case hit:
		return res, atLeastCache, nil
	case w.Met(res, err):
		return res, atLeastRead, nil
	case err != nil && tenant.ErrorCode(err) != tenant.NotFound:
		return res, atLeastFailed, err
	case res.Stale:
		// What the cache kept proves nothing about the write.
		return cache.Result{}, atLeastFailed, tenant.Errorf(tenant.Unavailable, "the region's replica could not be read to check min_version")
	case err == nil && res.TenantID == w.TenantID:
		return res, atLeastTooOld, s.behind(res.TenantID, res.Version, w.MinVersion, false)
	}
	return res, atLeastRead, err // another tenant, or NOT_FOUND: as it is
}

// behind returns the error of a min_version lookup that found tenant id at
// version have, below want.
func (s *Server) behind(id string, have, want int64, unreadable bool) error {
	return &behindError{region: s.region, tenantID: id, have: have, want: want, unreadable: unreadable}
}

// tenantVersion reads the version of tenant id's document in the replica
// (tombstones included; 0 when it has none), bounded by the cache's read
// timeout.
func (s *Server) tenantVersion(id string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.readTimeout)
	defer cancel()
	t, err := s.replica.GetTenant(ctx, id)
	switch {
	case err == nil && t != nil:
		return t.Version, nil
	case err == nil || tenant.ErrorCode(err) == tenant.NotFound:
		return 0, nil
	}
	s.readFailLog.log(s.log, slog.LevelWarn, "replica read failed", "tenant", id, "err", err)
	return 0, tenant.Errorf(tenant.Unavailable, "the region's replica could not be read to check min_version")
}

// readTimeoutOf is the bound of one replica read of a cache made with opts.
func readTimeoutOf(opts cache.Options) time.Duration {
	if opts.ReadTimeout > 0 {
		return opts.ReadTimeout
	}
	return cache.DefaultReadTimeout
}
