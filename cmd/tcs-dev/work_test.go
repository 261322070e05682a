package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/internal/leasetable"
	"github.com/tcs-dev/tcs/internal/testnet"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/work"
	"github.com/tcs-dev/tcs/tcs/work/worktest"
)

// member is a pool member joined through a tcs/client, with the latest
// assignment it was given. It counts on that one only, so it acknowledges
// each (Assignment.Applied) once recorded: the node hands what it dropped
// over at once, and when the member stops it leaves cleanly.
type member struct {
	mu     sync.Mutex
	latest client.Assignment
	stop   context.CancelFunc
	done   chan struct{}
}

func (m *member) tenants() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.latest.Tenants)
}

// countsOn is what the member may count on at now: its latest assignment
// until its ValidUntil.
func (m *member) countsOn(now time.Time) map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.latest.ValidUntil.After(now) {
		return nil
	}
	return maps.Clone(m.latest.Tenants)
}

func join(t *testing.T, addrs []string, pool, id string, opts ...client.Option) *member {
	t.Helper()
	c, err := client.New(context.Background(), append([]client.Option{client.WithRegions(addrs...), client.WithToken(lkp)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	as, err := c.Work(ctx, pool, 1, client.WithMember(id))
	if err != nil {
		t.Fatal(err)
	}
	m := &member{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for a := range as {
			m.mu.Lock()
			m.latest = a
			m.mu.Unlock()
			a.Applied()
		}
	}()
	t.Cleanup(func() { cancel(); <-m.done })
	return m
}

// TestWorkEndToEnd runs the work pools in the whole system: two members
// joined through different regions share the tenants (every ACTIVE tenant
// owned by exactly one of them); a tenant created or activated joins an
// assignment, one suspended leaves it; Validate accepts the owner's token, and after the
// owner leaves the other member takes its tenants and the old token is
// refused.
func TestWorkEndToEnd(t *testing.T) {
	t.Parallel()
	workEndToEnd(t, start(t, "--work-lease-duration", "2s"))
}

// TestWorkEndToEndAWS is TestWorkEndToEnd on the AWS family: the three
// regions' lookup servers keep the pools' leases in the home region's
// <prefix>-work-leases table (as tcs --backend aws nodes do), where the
// test finds the pool's bucket leases held by its members.
func TestWorkEndToEndAWS(t *testing.T) {
	// A longer lease than on the embedded family: a member's first round
	// takes its buckets one conditional write each, which DynamoDB Local
	// (under -race, on a busy machine) may not finish within 9/10 of 2 s,
	// and an assignment confirmed that late is not counted on.
	s, names := startAWS(t, "--work-lease-duration", "5s")
	workEndToEnd(t, s)

	st := &leasetable.Table{DB: emulators.SharedDynamoDBClient(t), Name: names.WorkLeaseTable(), Group: work.Group("reports"), Owner: "test"}
	leases, err := st.List(context.Background())
	if err != nil {
		t.Fatalf("listing %s: %v", names.WorkLeaseTable(), err)
	}
	held := 0
	for _, l := range leases {
		if l.Owner == "member-a" || l.Owner == "member-b" {
			held++
		}
	}
	// 256 bucket leases, all held by the member left (the other left and
	// released its own), plus the members' record leases.
	if held < work.Buckets {
		t.Errorf("%s holds %d leases of the pool's members (of %d leases); want the %d buckets at least", names.WorkLeaseTable(), held, len(leases), work.Buckets)
	}
}

func workEndToEnd(t *testing.T, s *system) {
	a := join(t, []string{s.ep.Regions["us-east-1"], s.ep.Regions["eu-west-1"]}, "reports", "member-a")
	b := join(t, []string{s.ep.Regions["ap-southeast-2"]}, "reports", "member-b")

	owners := func(want ...string) func() (bool, string) {
		return func() (bool, string) {
			ta, tb := a.tenants(), b.tenants()
			var got []string
			for id := range ta {
				if _, ok := tb[id]; ok {
					return false, id + " is owned by both members"
				}
				got = append(got, id)
			}
			got = append(got, slices.Collect(maps.Keys(tb))...)
			slices.Sort(got)
			return slices.Equal(got, want), fmt.Sprintf("owned: a %v, b %v; want %v", ta, tb, want)
		}
	}
	// The seed's ACTIVE tenants (initech is SUSPENDED).
	testwait.Until(t, 20*time.Second, 20*time.Millisecond, "the seed tenants to be owned", owners("acme", "globex"))

	code, _, body := s.rest(t, http.MethodPost, "/v1/tenants", adm, `{"id":"hooli","hostnames":["hooli.example.com"]}`)
	if code != http.StatusCreated {
		t.Fatalf("create hooli: %d %s", code, body)
	}
	testwait.Until(t, 20*time.Second, 20*time.Millisecond, "hooli to be owned", owners("acme", "globex", "hooli"))

	code, _, body = s.rest(t, http.MethodPatch, "/v1/tenants/globex", adm, `{"status":"SUSPENDED"}`, "Content-Type", "application/merge-patch+json", "If-Match", `"1"`)
	if code != http.StatusOK {
		t.Fatalf("suspend globex: %d %s", code, body)
	}
	code, _, body = s.rest(t, http.MethodPatch, "/v1/tenants/initech", adm, `{"status":"ACTIVE"}`, "Content-Type", "application/merge-patch+json", "If-Match", `"1"`)
	if code != http.StatusOK {
		t.Fatalf("activate initech: %d %s", code, body)
	}
	testwait.Until(t, 20*time.Second, 20*time.Millisecond, "globex given up, initech owned", owners("acme", "hooli", "initech"))

	conn, err := grpc.NewClient(s.ep.Regions["eu-west-1"], grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(bearer(lkp)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	validate := worktest.Validator(t, conn, "reports")
	// Make member a own something: if b got all three, a is the leaver.
	leaver, stayer, leaverID := a, b, "member-a"
	if len(a.tenants()) == 0 {
		leaver, stayer, leaverID = b, a, "member-b"
	}
	old := leaver.tenants()
	for id, tok := range old {
		if res := validate(id, tok); !res.Valid || res.Owner != leaverID {
			t.Fatalf("Validate(%s, %d) of its owner = %v", id, tok, res)
		}
	}
	leaver.stop()
	<-leaver.done
	testwait.Until(t, 20*time.Second, 20*time.Millisecond, "the stayer to own every tenant", func() (bool, string) {
		got := slices.Sorted(maps.Keys(stayer.tenants()))
		return slices.Equal(got, []string{"acme", "hooli", "initech"}), fmt.Sprint(got)
	})
	for id, tok := range old {
		if res := validate(id, tok); res.Valid || res.CurrentToken == tok || res.CurrentToken != stayer.tenants()[id] {
			t.Errorf("Validate(%s, %d) after %s left = %v; stayer's token %d", id, tok, leaverID, res, stayer.tenants()[id])
		}
	}
	if res := validate("globex", 1); res.Valid {
		t.Errorf("Validate of suspended globex = %v", res)
	}
}

// TestWorkNodeDeath is the work pools' node death on the embedded family:
// the us-east-1 lookup server becomes unreachable (a proxy in front of it
// black-holes every connection, as a dead or partitioned host does) while
// three members share the tenants: m1 joined through us-east-1 only, m2
// through us-east-1 then eu-west-1, m3 through ap-southeast-2. m1 stops
// counting on its tenants when its assignment lapses, the node stops
// renewing its buckets (no heartbeat reaches it), the buckets expire and m3
// takes them; m2 joins again through eu-west-1 once the node has been
// silent for a lease duration, and takes its share back. Every ACTIVE tenant ends owned
// by exactly one of m2 and m3, m1's tokens are refused by Validate naming
// the new owner's, and at no sampled instant did two members (m1 included:
// it is cut off, not dead) count on one tenant.
func TestWorkNodeDeath(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: waits out leases and rebalancing (about 5 s)")
	}
	t.Parallel()
	s := start(t, "--work-lease-duration", "2s")
	us := testnet.NewFreezer(t, s.ep.Regions["us-east-1"])
	api := s.api(t, adm)
	want := []string{"acme", "globex"} // the seed's ACTIVE tenants
	for i := range 20 {
		id := fmt.Sprintf("tenant-%02d", i)
		if _, err := api.Create(context.Background(), json.RawMessage(fmt.Sprintf(`{"id":%q,"hostnames":["%s.example.com"]}`, id, id))); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	slices.Sort(want)
	// m2 leaves the dead node a lease duration (2 s) after it stops
	// answering, long before keepalive (20 s + 10 s) would.
	m1 := join(t, []string{us.Addr()}, "reports", "m1")
	m2 := join(t, []string{us.Addr(), s.ep.Regions["eu-west-1"]}, "reports", "m2")
	m3 := join(t, []string{s.ep.Regions["ap-southeast-2"]}, "reports", "m3")
	members := map[string]*member{"m1": m1, "m2": m2, "m3": m3}

	violations := worktest.WatchOverlaps(t, func(now time.Time) map[string]map[string]uint64 {
		out := map[string]map[string]uint64{}
		for id, m := range members {
			out[id] = m.countsOn(now)
		}
		return out
	})
	ownedOnce := func(names ...string) func() (bool, string) {
		return func() (bool, string) {
			now := time.Now()
			owner := map[string]string{}
			var b strings.Builder
			for _, name := range names {
				owned := members[name].countsOn(now)
				fmt.Fprintf(&b, "%s %v; ", name, slices.Sorted(maps.Keys(owned)))
				for tenant := range owned {
					if _, dup := owner[tenant]; dup {
						return false, b.String() + tenant + " owned twice"
					}
					owner[tenant] = name
				}
			}
			got := slices.Sorted(maps.Keys(owner))
			return slices.Equal(got, want), fmt.Sprintf("%swant %v", &b, want)
		}
	}
	testwait.Until(t, 30*time.Second, 20*time.Millisecond, "every ACTIVE tenant to be owned by exactly one member, every member owning some", func() (bool, string) {
		ok, who := ownedOnce("m1", "m2", "m3")()
		now := time.Now()
		for _, m := range members {
			ok = ok && len(m.countsOn(now)) > 0
		}
		return ok, who
	})

	conn, err := grpc.NewClient(s.ep.Regions["ap-southeast-2"], grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(bearer(lkp)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	validate := worktest.Validator(t, conn, "reports")
	// Every tenant is owned once, but a handover may still be settling: a
	// fresh-clone run under load once had one of m1's tokens refused, with
	// no owner named, just after that (the cause was not pinned down: a
	// bucket between its owners, or this test's record of m1's assignment
	// behind the one m1 applied).
	var old map[string]uint64
	testwait.Until(t, 10*time.Second, 20*time.Millisecond, "the node to accept every token m1 counts on before its node dies", func() (bool, string) {
		old = m1.countsOn(time.Now())
		if len(old) == 0 {
			_, who := ownedOnce("m1", "m2", "m3")()
			return false, "m1 owns no tenant: " + who
		}
		for id, tok := range old {
			if res := validate(id, tok); !res.Valid || res.Owner != "m1" {
				return false, fmt.Sprintf("Validate(%s, %d) of its owner m1 = %v", id, tok, res)
			}
		}
		return true, ""
	})

	died := time.Now()
	us.Freeze()
	testwait.Until(t, 60*time.Second, 20*time.Millisecond, "m2 and m3 to own every ACTIVE tenant", func() (bool, string) {
		if len(m1.countsOn(time.Now())) > 0 {
			return false, "m1 still counts on its tenants"
		}
		return ownedOnce("m2", "m3")()
	})
	t.Logf("every ACTIVE tenant owned by m2 or m3 %v after the us-east-1 node stopped answering (lease 2s)", time.Since(died).Round(10*time.Millisecond))
	now := time.Now()
	current := m3.countsOn(now)
	maps.Copy(current, m2.countsOn(now))
	for id, tok := range old {
		if res := validate(id, tok); res.Valid || res.Owner == "m1" || res.CurrentToken == tok || res.CurrentToken != current[id] {
			t.Errorf("Validate(%s, %d) after m1 was cut off = %v; want refused, the current owner's token %d", id, tok, res, current[id])
		}
	}
	// m2 rejoined through eu-west-1 and shares the tenants again.
	testwait.Until(t, 60*time.Second, 20*time.Millisecond, "m2 to own tenants again through eu-west-1", func() (bool, string) {
		ok, who := ownedOnce("m2", "m3")()
		return ok && len(m2.countsOn(time.Now())) > 0, who
	})
	for _, v := range violations() {
		t.Error(v)
	}
}
