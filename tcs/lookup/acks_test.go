package lookup_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/testwait"
	adminv1 "github.com/tcs-dev/tcs/proto/tcs/admin/v1"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// session returns the session id and seq of a stream's first Resync.
func session(tb testing.TB, w *watchStream) (string, uint64) {
	tb.Helper()
	id := w.first.GetResync().GetSessionId()
	if len(id) != 32 || w.first.GetSeq() == 0 {
		tb.Fatalf("resync %v: want a 32-character session id and a seq", w.first)
	}
	return id, w.first.GetSeq()
}

// acker acks on one AckStream per session, each ack waited for (the acks
// counter moves once the node has recorded it).
type acker struct {
	e       *env
	streams map[string]tcsv1.TenantContextService_AckStreamClient
}

func newAcker(e *env) *acker {
	return &acker{e: e, streams: map[string]tcsv1.TenantContextService_AckStreamClient{}}
}

func (a *acker) ack(tb testing.TB, id string, seq uint64) {
	tb.Helper()
	stream, ok := a.streams[id]
	if !ok {
		var err error
		if stream, err = a.e.client.AckStream(testwait.Context(tb)); err != nil {
			tb.Fatalf("AckStream: %v", err)
		}
		a.streams[id] = stream
	}
	before := gather(tb, a.e.srv.Registry())["tcs_lookup_acks_total"]
	if err := stream.Send(&tcsv1.AckRequest{SessionId: id, Seq: seq}); err != nil {
		tb.Fatalf("ack(%s, %d): %v", id, seq, err)
	}
	testwait.For(tb, "the node to record the ack", func() bool {
		return gather(tb, a.e.srv.Registry())["tcs_lookup_acks_total"] > before
	})
}

func tenantStatus(tb testing.TB, e *env, id string, version int64) lookup.TenantStatus {
	tb.Helper()
	st, err := e.srv.TenantStatus(testwait.Context(tb), id, version)
	if err != nil {
		tb.Fatalf("TenantStatus(%s, %d): %v", id, version, err)
	}
	return st
}

// TestAcksAndTenantStatus follows one tenant through two changes, one the
// feed delivers and one it never does (a stalled feed), with an acking
// client, a lagging one and one that never acks.
func TestAcksAndTenantStatus(t *testing.T) {
	t.Parallel()
	const other = "acme.example.org"
	rep := newFakeReplica(makeTenant("acme", 1, host, other))
	e := start(t, lookup.Config{Replica: rep, AckGrace: 5 * time.Second}, lookup.ServeOptions{})
	ctx := testwait.Context(t)

	fast, slow, mute := openWatch(t, e), openWatch(t, e), openWatch(t, e)
	fastID, fastSeq := session(t, fast)
	slowID, slowSeq := session(t, slow)
	muteID, _ := session(t, mute)
	if fastID == slowID || slowID == muteID {
		t.Fatalf("two streams share a session id: %s %s %s", fastID, slowID, muteID)
	}
	if _, err := e.srv.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host}); err != nil {
		t.Fatal(err)
	}

	// Nothing acked yet, every stream young: all lagging. The node serves
	// v1 from its cache.
	want := lookup.TenantStatus{Region: "eu-west-1", ReplicaVersion: 1, CachedVersion: 1, FeedUp: true, Served: true,
		Clients: lookup.ClientCounts{Lagging: 3}}
	if diff := cmp.Diff(want, tenantStatus(t, e, "acme", 1)); diff != "" {
		t.Errorf("before acks (-want +got):\n%s", diff)
	}
	// Acking the first Resync covers a tenant the node never invalidated.
	acks := newAcker(e)
	acks.ack(t, fastID, fastSeq)
	acks.ack(t, slowID, slowSeq)
	e.clock.Advance(6 * time.Second) // past the ack grace: mute is not acking
	want.Clients = lookup.ClientCounts{Acknowledged: 2, NotAcking: 1}
	if diff := cmp.Diff(want, tenantStatus(t, e, "acme", 1)); diff != "" {
		t.Errorf("after acking the Resyncs (-want +got):\n%s", diff)
	}

	// v2, delivered: the cache entry is out of date (lookups read the
	// replica, at v2); clients are acknowledged once they ack its seq.
	rep.set(makeTenant("acme", 2, host, other))
	if err := e.hub.Broadcast(ctx, tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{host, other}}); err != nil {
		t.Fatal(err)
	}
	inv := fast.next(t, "invalidation")
	slow.next(t, "invalidation")
	if inv.GetSeq() <= fastSeq {
		t.Fatalf("invalidation seq %d, want above the Resync's %d", inv.GetSeq(), fastSeq)
	}
	want = lookup.TenantStatus{Region: "eu-west-1", ReplicaVersion: 2, FeedVersion: 2, FeedUp: true, Served: true,
		Clients: lookup.ClientCounts{Lagging: 2, NotAcking: 1}}
	if diff := cmp.Diff(want, tenantStatus(t, e, "acme", 2)); diff != "" {
		t.Errorf("v2 delivered, not acked (-want +got):\n%s", diff)
	}
	acks.ack(t, fastID, inv.GetSeq())
	acks.ack(t, slowID, inv.GetSeq()-1) // short of it
	acks.ack(t, fastID, fastSeq)        // an older ack changes nothing
	want.Clients = lookup.ClientCounts{Acknowledged: 1, Lagging: 1, NotAcking: 1}
	if diff := cmp.Diff(want, tenantStatus(t, e, "acme", 2)); diff != "" {
		t.Errorf("v2 acked by one (-want +got):\n%s", diff)
	}
	// Asked about v1, v2's invalidation covers it too.
	if got := tenantStatus(t, e, "acme", 1).Clients.Acknowledged; got != 1 {
		t.Errorf("acknowledged v1 = %d, want 1", got)
	}

	// v3 reaches the replica but the feed never delivers it: the node's
	// cache still serves v2 (read after v2's invalidation) and no client
	// can have seen v3.
	if _, err := e.srv.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host}); err != nil {
		t.Fatal(err)
	}
	rep.set(makeTenant("acme", 3, host, other))
	want = lookup.TenantStatus{Region: "eu-west-1", ReplicaVersion: 3, CachedVersion: 2, FeedVersion: 2, FeedUp: true,
		Clients: lookup.ClientCounts{Lagging: 2, NotAcking: 1}}
	if diff := cmp.Diff(want, tenantStatus(t, e, "acme", 3)); diff != "" {
		t.Errorf("v3 not delivered (-want +got):\n%s", diff)
	}

	// A stream that ends takes its session along, and ends its AckStream.
	fast.cancel()
	testwait.For(t, "the stream to end", func() bool { return watchStreams(e) == 2 })
	if _, err := acks.streams[fastID].CloseAndRecv(); status.Code(err) != codes.NotFound {
		t.Errorf("AckStream of an ended Watch stream: %v, want NotFound", err)
	}
	if code := ackStreamCode(t, e, &tcsv1.AckRequest{SessionId: fastID, Seq: math.MaxUint64}); code != codes.NotFound {
		t.Errorf("AckStream of an ended session: %v, want NotFound", code)
	}
}

// TestTenantStatusNodeBehind: a node whose feed never brought it any
// invalidation of the tenant, and whose cache still holds an older version,
// counts its clients lagging, acked or not: they cannot be ahead of it.
// (They counted as acknowledged, unless the node happened to remember an
// earlier invalidation of the tenant.)
func TestTenantStatusNodeBehind(t *testing.T) {
	t.Parallel()
	rep := newFakeReplica(makeTenant("acme", 1, host))
	e := start(t, lookup.Config{Replica: rep, AckGrace: 5 * time.Second}, lookup.ServeOptions{})
	w := openWatch(t, e)
	id, seq := session(t, w)
	newAcker(e).ack(t, id, seq)
	if _, err := e.srv.Lookup(testwait.Context(t), &tcsv1.LookupRequest{Hostname: host}); err != nil {
		t.Fatal(err)
	}
	rep.set(makeTenant("acme", 2, host)) // the feed never delivers it
	want := lookup.TenantStatus{Region: "eu-west-1", ReplicaVersion: 2, CachedVersion: 1, FeedUp: true,
		Clients: lookup.ClientCounts{Lagging: 1}}
	if diff := cmp.Diff(want, tenantStatus(t, e, "acme", 2)); diff != "" {
		t.Errorf("v2 not delivered, nothing remembered (-want +got):\n%s", diff)
	}
	// Asked about v1, which it serves, the acked client is acknowledged.
	if got := tenantStatus(t, e, "acme", 1).Clients; got != (lookup.ClientCounts{Acknowledged: 1}) {
		t.Errorf("v1: clients %+v, want 1 acknowledged", got)
	}
}

// ackStreamCode opens an AckStream, sends reqs and returns the code the
// node ends it with.
func ackStreamCode(tb testing.TB, e *env, reqs ...*tcsv1.AckRequest) codes.Code {
	tb.Helper()
	stream, err := e.client.AckStream(testwait.Context(tb))
	if err != nil {
		tb.Fatalf("AckStream: %v", err)
	}
	for _, r := range reqs {
		if err := stream.Send(r); err != nil {
			break // ended: CloseAndRecv says why
		}
	}
	_, err = stream.CloseAndRecv()
	return status.Code(err)
}

// TestAckStreamRefusals: an AckStream whose session is unknown, taken by
// another AckStream, or changes midway ends with a code that says so, and
// each outcome is counted.
func TestAckStreamRefusals(t *testing.T) {
	t.Parallel()
	e := start(t, lookup.Config{}, lookup.ServeOptions{})
	w := openWatch(t, e)
	id, seq := session(t, w)
	other, _ := session(t, openWatch(t, e))

	if code := ackStreamCode(t, e, &tcsv1.AckRequest{SessionId: "0123456789abcdef0123456789abcdef", Seq: 1}); code != codes.NotFound {
		t.Errorf("unknown session: %v, want NotFound", code)
	}
	acks := newAcker(e)
	acks.ack(t, id, seq)
	if code := ackStreamCode(t, e, &tcsv1.AckRequest{SessionId: id, Seq: seq}); code != codes.AlreadyExists {
		t.Errorf("second AckStream of a session: %v, want AlreadyExists", code)
	}
	if code := ackStreamCode(t, e, &tcsv1.AckRequest{SessionId: other, Seq: 1}, &tcsv1.AckRequest{SessionId: id, Seq: 2}); code != codes.InvalidArgument {
		t.Errorf("AckStream changing session: %v, want InvalidArgument", code)
	}
	m := gather(t, e.srv.Registry())
	for outcome, want := range map[string]float64{"opened": 2, "unknown_session": 1, "duplicate": 1} {
		if got := m[`tcs_lookup_ack_streams_total{outcome="`+outcome+`"}`]; got != want {
			t.Errorf("ack streams %s = %v, want %v", outcome, got, want)
		}
	}
	// The session's own stream closed by its client: OK, and the session
	// may open another.
	if _, err := acks.streams[id].CloseAndRecv(); err != nil {
		t.Errorf("AckStream closed by its client: %v, want OK", err)
	}
	// The node cleared the session's AckStream before it answered.
	again := ackStreamCode(t, e, &tcsv1.AckRequest{SessionId: id, Seq: seq})
	if again != codes.OK {
		t.Errorf("the session's next AckStream: %v, want OK (accepted, then closed by the client)", again)
	}
}

// TestAckResyncCovers: a Resync sent because a stream fell behind is
// numbered as the last broadcast it covers.
func TestAckResyncCovers(t *testing.T) {
	t.Parallel()
	rep := newFakeReplica(makeTenant("acme", 1, host))
	e := start(t, lookup.Config{Replica: rep, WatchBuffer: 1}, lookup.ServeOptions{})
	ctx := testwait.Context(t)
	w := openWatch(t, e)
	id, _ := session(t, w)
	// The server's feed goroutine queues faster than the stream drains
	// only if the client does not read: the stream's buffer of 1 fills,
	// so what follows is a Resync. Gap does the same without a race.
	for v := int64(2); v <= 4; v++ {
		rep.set(makeTenant("acme", v, host))
		if err := e.hub.Broadcast(ctx, tcs.Invalidation{TenantID: "acme", Version: v, Hostnames: []string{host}}); err != nil {
			t.Fatal(err)
		}
	}
	// Read until the v4 invalidation or a Resync after it is seen.
	var last *tcsv1.WatchResponse
	for last == nil || (last.GetResync() == nil && last.GetInvalidation().GetVersion() != 4) {
		select {
		case last = <-w.msgs:
		case err := <-w.err:
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatal("timed out waiting for v4 or a Resync")
		}
		if r := last.GetResync(); r != nil && r.GetSessionId() != id {
			t.Fatalf("Resync names session %s, want %s", r.GetSessionId(), id)
		}
	}
	newAcker(e).ack(t, id, last.GetSeq())
	if got := tenantStatus(t, e, "acme", 4).Clients; got != (lookup.ClientCounts{Acknowledged: 1}) {
		t.Errorf("clients %+v, want the one acknowledged", got)
	}
}

// TestAckLRUFloor: a tenant whose last invalidation the node no longer
// remembers is judged by the newest one it forgot.
func TestAckLRUFloor(t *testing.T) {
	t.Parallel()
	rep := newFakeReplica(makeTenant("acme", 2, host), makeTenant("beta", 1, "beta.example.com"))
	e := start(t, lookup.Config{Replica: rep, AckTenants: 1}, lookup.ServeOptions{})
	ctx := testwait.Context(t)
	w := openWatch(t, e)
	id, _ := session(t, w)
	if err := e.hub.Broadcast(ctx, tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{host}}); err != nil {
		t.Fatal(err)
	}
	acme := w.next(t, "invalidation")
	acks := newAcker(e)
	acks.ack(t, id, acme.GetSeq()-1)
	if err := e.hub.Broadcast(ctx, tcs.Invalidation{TenantID: "beta", Version: 1, Hostnames: []string{"beta.example.com"}}); err != nil {
		t.Fatal(err)
	}
	w.next(t, "invalidation") // acme is forgotten now
	if got := tenantStatus(t, e, "acme", 2).Clients; got != (lookup.ClientCounts{Lagging: 1}) {
		t.Errorf("before acking acme's seq: clients %+v, want lagging", got)
	}
	acks.ack(t, id, acme.GetSeq())
	if got := tenantStatus(t, e, "acme", 2); got.Clients != (lookup.ClientCounts{Acknowledged: 1}) || got.FeedVersion != 0 {
		t.Errorf("after: %+v, want the client acknowledged and no feed version remembered", got)
	}
}

func TestTenantStatusInput(t *testing.T) {
	t.Parallel()
	rep := boltReplica(t) // ReplicaAdmin needs a replica that scans
	ctx := testwait.Context(t)
	if _, err := rep.Apply(ctx, replicatest.Event("acme", 1, map[string]int64{host: 1}, nil)); err != nil {
		t.Fatal(err)
	}
	e := start(t, lookup.Config{Replica: rep, ReplicaAdmin: true}, lookup.ServeOptions{Auth: testAuth(t,
		auth.Line(auth.ReplicaScan, "adm", "verify"), auth.Line(auth.Lookup, "lkp", "svc"))})
	admin := adminv1.NewReplicaAdminClient(e.conn)
	for _, tc := range []struct {
		name, cred, id string
		version        int64
		want           codes.Code
		field          string
	}{
		{"no credential", "", "acme", 1, codes.Unauthenticated, ""},
		{"lookup credential", "Bearer lkp", "acme", 1, codes.PermissionDenied, ""},
		{"version 0", "Bearer adm", "acme", 0, codes.InvalidArgument, "version"},
		{"negative version", "Bearer adm", "acme", -3, codes.InvalidArgument, "version"},
		{"bad id", "Bearer adm", "Not An Id", 1, codes.InvalidArgument, "id"},
		{"ok", "Bearer adm", "acme", 1, codes.OK, ""},
		{"unknown tenant", "Bearer adm", "nobody", 1, codes.OK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ctx
			if tc.cred != "" {
				c = bearer(ctx, tc.cred)
			}
			resp, err := admin.TenantStatus(c, &adminv1.TenantStatusRequest{TenantId: tc.id, Version: tc.version})
			if status.Code(err) != tc.want {
				t.Fatalf("TenantStatus: %v, want %v", err, tc.want)
			}
			if tc.field != "" && !strings.Contains(status.Convert(err).Message(), tc.field) {
				t.Errorf("message %q does not name %q", status.Convert(err).Message(), tc.field)
			}
			if tc.name == "ok" && (!resp.GetServed() || resp.GetReplicaVersion() != 1 || resp.GetRegion() != "eu-west-1") {
				t.Errorf("response %v: want served v1 in eu-west-1", resp)
			}
			if tc.name == "unknown tenant" && (resp.GetServed() || resp.GetReplicaVersion() != 0) {
				t.Errorf("response %v: want not served, replica version 0", resp)
			}
		})
	}
	// The Server method gives a domain error naming the field.
	if _, err := e.srv.TenantStatus(ctx, "acme", 0); tenant.ErrorCode(err) != tenant.Invalid {
		t.Errorf("TenantStatus(version 0): %v, want Invalid", err)
	}
	// Counted by outcome: the calls that reached the node (the first two
	// were refused by authentication), and the one above.
	m := gather(t, e.srv.Registry())
	for outcome, want := range map[string]float64{"ok": 2, "invalid": 4, "error": 0} {
		if got := m[`tcs_lookup_tenant_status_calls_total{outcome="`+outcome+`"}`]; got != want {
			t.Errorf("tenant status calls %s = %v, want %v", outcome, got, want)
		}
	}
}

// TestAckNow: a node asks its clients to ack at once what someone waits
// for: the invalidations of a tenant whose status was asked carry ack_now
// (others do not), and a status call that finds a stream behind a
// broadcast change sends it a Heartbeat with ack_now, once per change.
func TestAckNow(t *testing.T) {
	t.Parallel()
	rep := newFakeReplica(makeTenant("acme", 1, host), makeTenant("beta", 1, "beta.example.com"))
	e := start(t, lookup.Config{Replica: rep, HeartbeatInterval: time.Hour}, lookup.ServeOptions{}) // only requests are heartbeats
	ctx := testwait.Context(t)
	w := openWatch(t, e)
	broadcast := func(id string, v int64, h string) *tcsv1.WatchResponse {
		t.Helper()
		if err := e.hub.Broadcast(ctx, tcs.Invalidation{TenantID: id, Version: v, Hostnames: []string{h}}); err != nil {
			t.Fatal(err)
		}
		return w.next(t, "invalidation")
	}
	if inv := broadcast("acme", 2, host); inv.GetAckNow() {
		t.Errorf("invalidation of a tenant nobody waits for: ack_now set")
	}
	// The stream has not acked acme's v2: asking its status asks the
	// stream, once however often it is asked.
	for range 3 {
		if got := tenantStatus(t, e, "acme", 2).Clients; got != (lookup.ClientCounts{Lagging: 1}) {
			t.Fatalf("clients %+v, want one lagging", got)
		}
	}
	if hb := w.next(t, "heartbeat"); !hb.GetAckNow() || hb.GetHeartbeat().GetInterval().AsDuration() <= 0 {
		t.Errorf("request %v: want a heartbeat with ack_now and the interval", hb)
	}
	// Now someone waits for acme: its next invalidation asks at once;
	// beta's does not. (A second request would have come before it.)
	if inv := broadcast("acme", 3, host); !inv.GetAckNow() {
		t.Errorf("invalidation of a waited tenant: ack_now not set")
	}
	if inv := broadcast("beta", 2, "beta.example.com"); inv.GetAckNow() {
		t.Errorf("invalidation of beta: ack_now set")
	}
	if got := gather(t, e.srv.Registry())["tcs_lookup_ack_requests_total"]; got != 1 {
		t.Errorf("ack requests %v, want 1", got)
	}
}
