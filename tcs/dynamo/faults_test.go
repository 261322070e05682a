package dynamo_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
	replicadynamo "github.com/tcs-dev/tcs/tcs/dynamo"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// Methods of replicadynamo.API that faulty can fail.
const (
	mBatchGet = "BatchGetItem"
	mGet      = "GetItem"
	mTransact = "TransactWriteItems"
)

// faulty passes calls to the emulator, except that it fails the next calls
// of a method with the errors queued for it (fail), or every call with
// always[method]. before, if set, runs before each call is decided.
type faulty struct {
	replicadynamo.API
	mu     sync.Mutex
	queued map[string][]error
	always map[string]error
	calls  map[string]int
	before func(method string, call int)
}

func newFaulty(api replicadynamo.API) *faulty {
	return &faulty{API: api, queued: map[string][]error{}, always: map[string]error{}, calls: map[string]int{}}
}

func (f *faulty) fail(method string, errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queued[method] = append(f.queued[method], errs...)
}

func (f *faulty) failAlways(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.always[method] = err
}

func (f *faulty) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *faulty) next(method string) error {
	f.mu.Lock()
	f.calls[method]++
	call, before := f.calls[method], f.before
	f.mu.Unlock()
	if before != nil {
		before(method, call)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.always[method]; err != nil {
		return err
	}
	if q := f.queued[method]; len(q) > 0 {
		f.queued[method] = q[1:]
		return q[0]
	}
	return nil
}

func (f *faulty) GetItem(ctx context.Context, in *dynamodb.GetItemInput, o ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	if err := f.next(mGet); err != nil {
		return nil, err
	}
	return f.API.GetItem(ctx, in, o...)
}

func (f *faulty) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, o ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	if err := f.next(mBatchGet); err != nil {
		return nil, err
	}
	return f.API.BatchGetItem(ctx, in, o...)
}

func (f *faulty) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, o ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	err := f.next(mTransact)
	var lost *lostResponse
	if errors.As(err, &lost) {
		if _, err := f.API.TransactWriteItems(ctx, in, o...); err != nil {
			return nil, err
		}
		return nil, lost.err
	}
	if err != nil {
		return nil, err
	}
	return f.API.TransactWriteItems(ctx, in, o...)
}

// lostResponse, queued for TransactWriteItems, makes the call commit and
// then fail with err, as when the response is lost on the way back.
type lostResponse struct{ err error }

func (e *lostResponse) Error() string { return "response lost: " + e.err.Error() }

func cancelled(code string) error {
	return &types.TransactionCanceledException{
		Message:             aws.String("Transaction cancelled, please refer cancellation reasons for specific reasons"),
		CancellationReasons: []types.CancellationReason{{Code: aws.String("None")}, {Code: aws.String(code)}},
	}
}

// serverError is what the SDK returns for an HTTP 500 once its own retries
// are spent.
func serverError(op string) error {
	return &smithy.OperationError{ServiceID: "DynamoDB", OperationName: op, Err: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusInternalServerError}},
		Err:      &smithy.GenericAPIError{Code: "InternalFailure", Message: "internal failure"},
	}}
}

var (
	throttled = &types.ProvisionedThroughputExceededException{Message: aws.String("throughput exceeded")}
	throttle2 = &smithy.GenericAPIError{Code: "ThrottlingException", Message: "rate exceeded"}
)

// TestApplyRetriesFaults checks that Apply rides out transient failures of
// each call it makes, and that the result is as if there had been none.
func TestApplyRetriesFaults(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	tests := []struct {
		name   string
		method string
		errs   []error
	}{
		{"condition failed", mTransact, []error{cancelled("ConditionalCheckFailed")}},
		{"transaction conflicts", mTransact, []error{cancelled("TransactionConflict"), &types.TransactionConflictException{Message: aws.String("conflict")}}},
		{"throttled transaction", mTransact, []error{cancelled("ThrottlingError"), throttled, throttle2}},
		{"server error on commit", mTransact, []error{serverError(mTransact), &types.InternalServerError{Message: aws.String("oops")}}},
		// The commit happens but its response is lost: the retry finds
		// nothing to do, yet must report what the lost commit changed.
		{"response lost after commit", mTransact, []error{&lostResponse{serverError(mTransact)}}},
		{"throttled reads", mBatchGet, []error{throttled, &types.RequestLimitExceeded{Message: aws.String("limit")}}},
		{"server error on read", mBatchGet, []error{serverError(mBatchGet), serverError(mBatchGet), serverError(mBatchGet)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			table := newTable(t, c)
			f := newFaulty(c)
			r := openOn(t, f, table, replicadynamo.Config{MaxAttempts: 5})
			a1 := replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1, "old.example.com": 1}, nil)
			a2 := replicatest.Event("acme", 2, map[string]int64{"acme.example.com": 1}, map[string]int64{"old.example.com": 2})
			if _, err := r.Apply(t.Context(), a1); err != nil {
				t.Fatalf("Apply(a1): %v", err)
			}
			before := f.count(tt.method)
			f.fail(tt.method, tt.errs...)
			res, err := r.Apply(t.Context(), a2)
			if err != nil {
				t.Fatalf("Apply(a2) with %d transient failures: %v", len(tt.errs), err)
			}
			want := tcs.ApplyResult{Applied: true, Hostnames: []string{"acme.example.com", "old.example.com"}}
			if diff := cmp.Diff(want, res); diff != "" {
				t.Errorf("Apply(a2) (-want +got):\n%s", diff)
			}
			wantCalls := len(tt.errs) + 1
			var lost *lostResponse
			if errors.As(tt.errs[0], &lost) {
				wantCalls = 1 // the retry has nothing left to commit
			}
			if got, want := f.count(tt.method)-before, wantCalls; got != want {
				t.Errorf("%s calls during Apply(a2) = %d, want %d (one per failure, then success)", tt.method, got, want)
			}
			clean := openOn(t, c, table, replicadynamo.Config{})
			wantLookup(t, clean, "acme.example.com", a2.Tenant)
			wantLookup(t, clean, "old.example.com", nil)
			wantHosts(t, clean, map[string]tcs.HostRecord{
				"acme.example.com": {TenantID: "acme", ClaimVersion: 1},
				"old.example.com":  {ClaimVersion: 2},
			})
		})
	}
}

// TestApplyGivesUp checks that persistent failures end as Unavailable after
// MaxAttempts, naming the operation and keeping the SDK's error, and that a
// refused transaction (which no retry can fix) fails at once as internal.
func TestApplyGivesUp(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	tests := []struct {
		name      string
		method    string
		err       error
		wantCode  tenant.Code
		wantCalls int
	}{
		{"endless conflicts", mTransact, cancelled("TransactionConflict"), tenant.Unavailable, 4},
		{"endless throttling", mBatchGet, throttled, tenant.Unavailable, 4},
		{"endless server errors", mTransact, serverError(mTransact), tenant.Unavailable, 4},
		{"validation error", mTransact, cancelled("ValidationError"), tenant.Internal, 1},
		{"access denied", mBatchGet, &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "no"}, tenant.Unavailable, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			table := newTable(t, c)
			f := newFaulty(c)
			r := openOn(t, f, table, replicadynamo.Config{MaxAttempts: 4})
			f.failAlways(tt.method, tt.err)
			_, err := r.Apply(t.Context(), replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil))
			if got := tenant.ErrorCode(err); got != tt.wantCode {
				t.Fatalf("Apply: %v (code %q), want code %q", err, got, tt.wantCode)
			}
			if !strings.Contains(err.Error(), `dynamo replica apply tenant "acme" version 1`) {
				t.Errorf("Apply: %v; want the operation and tenant named", err)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("Apply: %v; want it to wrap %v", err, tt.err)
			}
			if tt.wantCode == tenant.Unavailable && strings.Contains(tenant.ErrorMessage(err), "exceeded") {
				t.Errorf("ErrorMessage = %q; the SDK's error is for logs, not callers", tenant.ErrorMessage(err))
			}
			if got := f.count(tt.method); got != tt.wantCalls {
				t.Errorf("%d %s calls, want %d", got, tt.method, tt.wantCalls)
			}
			clean := openOn(t, c, table, replicadynamo.Config{})
			wantDoc(t, clean, "acme", nil)
			wantHosts(t, clean, nil)
		})
	}
}

func TestLookupUnavailable(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	f := newFaulty(c)
	r := openOn(t, f, newTable(t, c), replicadynamo.Config{})
	if _, err := r.Apply(t.Context(), replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	f.failAlways(mGet, serverError(mGet))
	_, err := r.LookupHostname(t.Context(), "acme.example.com")
	if tenant.ErrorCode(err) != tenant.Unavailable || !strings.Contains(err.Error(), "lookup hostname acme.example.com") {
		t.Errorf("LookupHostname with GetItem failing: %v; want Unavailable naming the operation", err)
	}
	_, err = r.GetTenant(t.Context(), "acme")
	if tenant.ErrorCode(err) != tenant.Unavailable || !strings.Contains(err.Error(), "get tenant acme") {
		t.Errorf("GetTenant with GetItem failing: %v; want Unavailable naming the operation", err)
	}
}

// TestConflictIsRedecided makes another tenant's claim of a hostname commit
// between an Apply's reads and its transaction: the transaction's condition
// fails, and Apply decides again from fresh reads instead of overwriting the
// newer claim.
func TestConflictIsRedecided(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	const h = "shared.example.com"
	a1 := replicatest.Event("a", 1, map[string]int64{h: 1, "a.example.com": 1}, nil)
	b1 := replicatest.Event("b", 1, map[string]int64{h: 3, "b.example.com": 1}, nil)
	a3 := replicatest.Event("a", 3, map[string]int64{h: 5, "a.example.com": 1}, nil)
	a2 := replicatest.Event("a", 2, map[string]int64{"a.example.com": 1}, map[string]int64{h: 2})
	b2 := replicatest.Event("b", 2, map[string]int64{"b.example.com": 1}, map[string]int64{h: 4})
	tests := []struct {
		name          string
		first, racing *tenant.ChangeEvent
		prior         []*tenant.ChangeEvent
		want          *tenant.ChangeEvent // owner of h at the end
	}{
		// a's stale claim must not overwrite b's newer one that raced it.
		{"older claim loses", a1, b1, nil, b1},
		// a's newer claim wins over b's older one whichever commits first.
		{"newer claim wins", a3, b1, nil, a3},
		// b's release raced a's re-claim: the claim (5) is newer than the
		// release (4).
		{"claim beats older release", a3, b2, []*tenant.ChangeEvent{a1, a2, b1}, a3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			table := newTable(t, c)
			clean := openOn(t, c, table, replicadynamo.Config{})
			for _, ev := range tt.prior {
				if _, err := clean.Apply(t.Context(), ev); err != nil {
					t.Fatalf("Apply(%s@%d): %v", ev.TenantID, ev.Version, err)
				}
			}
			f := newFaulty(c)
			f.before = func(method string, call int) {
				if method == mTransact && call == 1 {
					if _, err := clean.Apply(context.Background(), tt.racing); err != nil {
						t.Errorf("racing Apply(%s@%d): %v", tt.racing.TenantID, tt.racing.Version, err)
					}
				}
			}
			r := openOn(t, f, table, replicadynamo.Config{})
			if _, err := r.Apply(t.Context(), tt.first); err != nil {
				t.Fatalf("Apply(%s@%d): %v", tt.first.TenantID, tt.first.Version, err)
			}
			if n := f.count(mTransact); n != 2 {
				t.Errorf("%d transactions, want 2 (the first cancelled by the racing claim)", n)
			}
			wantLookup(t, clean, h, tt.want.Tenant)
			wantDoc(t, clean, tt.first.TenantID, tt.first.Tenant)
		})
	}
}

// TestConcurrentConflictingApplies delivers the events of tenants moving one
// hostname between them from one goroutine per tenant, many times over:
// whatever the interleaving, the replica ends at the truth.
func TestConcurrentConflictingApplies(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	const h = "shared.example.com"
	byTenant := [][]*tenant.ChangeEvent{
		{
			replicatest.Event("a", 1, map[string]int64{h: 1, "a.example.com": 1}, nil),
			replicatest.Event("a", 2, map[string]int64{"a.example.com": 1}, map[string]int64{h: 2}),
			replicatest.Event("a", 3, map[string]int64{h: 5, "a.example.com": 1}, nil),
			replicatest.Event("a", 4, map[string]int64{"a.example.com": 1}, map[string]int64{h: 6}),
		},
		{
			replicatest.Event("b", 1, map[string]int64{h: 3, "b.example.com": 1}, nil),
			replicatest.Event("b", 2, map[string]int64{"b.example.com": 1}, map[string]int64{h: 4}),
			replicatest.Event("b", 3, map[string]int64{h: 7, "b.example.com": 1}, nil),
		},
	}
	truth := byTenant[1][2].Tenant // b holds h at claim 7
	for round := range 8 {
		r := openFresh(t, c)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w, evs := range byTenant {
			wg.Go(func() {
				<-start
				// Each goroutine sends its tenant's events newest first or
				// oldest first, alternating by round, twice.
				for i := range 2 * len(evs) {
					ev := evs[i%len(evs)]
					if (round+w)%2 == 1 {
						ev = evs[len(evs)-1-i%len(evs)]
					}
					if _, err := r.Apply(context.Background(), ev); err != nil {
						t.Errorf("round %d: Apply(%s@%d): %v", round, ev.TenantID, ev.Version, err)
					}
				}
			})
		}
		close(start)
		wg.Wait()
		wantLookup(t, r, h, truth)
		wantLookup(t, r, "a.example.com", byTenant[0][3].Tenant)
		wantLookup(t, r, "b.example.com", truth)
		wantHosts(t, r, map[string]tcs.HostRecord{
			h:               {TenantID: "b", ClaimVersion: 7},
			"a.example.com": {TenantID: "a", ClaimVersion: 1},
			"b.example.com": {TenantID: "b", ClaimVersion: 1},
		})
	}
}
