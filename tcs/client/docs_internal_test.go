package client

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"

	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// TestSlotsHoldNoPointers: the tables' slots and bytes are pointer-free,
// so the collector does not scan them (what keeps a full cache cheap for
// it: see BenchmarkGC).
func TestSlotsHoldNoPointers(t *testing.T) {
	t.Parallel()
	var walk func(reflect.Type) bool
	walk = func(ty reflect.Type) bool {
		switch ty.Kind() {
		case reflect.Pointer, reflect.String, reflect.Slice, reflect.Map, reflect.Chan, reflect.Func, reflect.Interface, reflect.UnsafePointer:
			return true
		case reflect.Array:
			return walk(ty.Elem())
		case reflect.Struct:
			for i := range ty.NumField() {
				if walk(ty.Field(i).Type) {
					return true
				}
			}
		}
		return false
	}
	if walk(reflect.TypeFor[slot]()) {
		t.Error("slot holds a pointer: every table's slots would be scanned by the collector")
	}
	if got := reflect.TypeFor[slot]().Size(); got != 64 {
		t.Errorf("slot is %d bytes, want 64 (one cache line)", got)
	}
}

// richDoc is a tenant with every field set, so that a document that does
// not survive serialisation shows.
func richDoc(id string, version int64, hostnames ...string) *tenant.Tenant {
	t := doc(id, version, hostnames...)
	t.Products = map[string]tenant.Product{"jira": {State: tenant.ProductActive, Users: version, Edition: "premium"}}
	t.Database = &tenant.Database{Engine: "postgres", Host: "db-" + id + ".internal", Port: 5432, Name: id}
	t.Labels = map[string]string{"rev": fmt.Sprint(version)}
	t.Region = "eu-west-1"
	return t
}

// TestSerialisedCacheModel puts, invalidates and looks up random tenants
// (short and long hostnames, negative answers) in a cache small enough to
// evict and rebuild its tables often, holding few documents decoded, and
// checks every answer against a model: a hostname's entry is gone (evicted)
// or exactly the tenant last put for it.
func TestSerialisedCacheModel(t *testing.T) {
	t.Parallel()
	c, _ := testCache(300)
	for i := range c.shards {
		c.shards[i].maxDecoded = 8
	}
	rng := rand.New(rand.NewPCG(1, 2))
	hosts := make([]string, 400)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("h%d.example.com", i)
		if i%3 == 0 {
			hosts[i] = fmt.Sprintf("a-long-hostname-beyond-the-inline-key-%d.tenants.example.com", i)
		}
	}
	model := map[string]*tenant.Tenant{} // nil: a negative answer
	version := map[string]int64{}
	for step := range 20_000 {
		h := hosts[rng.IntN(len(hosts))]
		switch op := rng.IntN(10); {
		case op < 6:
			id := fmt.Sprintf("tenant-%d", rng.IntN(50))
			version[id]++
			tn := richDoc(id, version[id], h)
			if c.put(h, entry{t: tn, readAt: c.clock()}, c.begin()) {
				model[h] = tn
			}
		case op < 7:
			if c.put(h, entry{readAt: c.clock()}, c.begin()) {
				model[h] = nil
			}
		case op < 8:
			if m, ok := model[h]; ok && m != nil {
				c.invalidate(m.ID, m.Version+1, []string{h})
				delete(model, h)
			}
		default:
			e, st := c.get(h, c.clock())
			want, ok := model[h]
			if st == absent {
				delete(model, h) // evicted
				continue
			}
			if !ok {
				t.Fatalf("step %d: %s found, but the model has nothing there", step, h)
			}
			if diff := cmp.Diff(want, e.t); diff != "" {
				t.Fatalf("step %d: %s (-want +got):\n%s", step, h, diff)
			}
		}
		if step%1000 == 0 {
			checkDecoded(t, c)
		}
	}
	checkDecoded(t, c)
}

// checkDecoded checks that each shard counts the documents its table holds
// decoded, and holds no more than it may.
func checkDecoded(t *testing.T, c *cache) {
	t.Helper()
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n := 0
		tab := sh.tab.Load()
		for j := range tab.held {
			h := &tab.held[j]
			o := h.owner.Load()
			if uint32(o) == 0 {
				if h.t.Load() != nil {
					t.Errorf("shard %d: free held entry %d keeps a tenant", i, j)
				}
				continue
			}
			n++
			// The slot it names is live and names it back.
			if w := tab.slots[uint32(o)-1].ctrl.Load(); w <= ctrlDeleted || int(w>>ctrlHeldAt&0xff) != j+1 {
				t.Errorf("shard %d: held entry %d names slot %d, whose control word %#x does not name it", i, j, uint32(o)-1, w)
			}
			if h.t.Load() == nil {
				t.Errorf("shard %d: held entry %d holds no tenant", i, j)
			}
		}
		for k := range tab.slots {
			w := tab.slots[k].ctrl.Load()
			if j := int(w >> ctrlHeldAt & 0xff); w > ctrlDeleted && j != 0 && uint32(tab.held[j-1].owner.Load()) != uint32(k+1) {
				t.Errorf("shard %d: slot %d names held entry %d, which does not name it", i, k, j-1)
			}
		}
		if n != sh.decoded || n > sh.maxDecoded {
			t.Errorf("shard %d holds %d documents decoded, counts %d, may hold %d", i, n, sh.decoded, sh.maxDecoded)
		}
		sh.mu.Unlock()
	}
}

// TestHeldUnderChurn: readers hitting tenants while other hits and puts
// hold and let go of decoded documents (4 per shard, for 300 hostnames)
// and rebuild tables always get the tenant of the hostname they asked for,
// never one another slot held in the same entry.
func TestHeldUnderChurn(t *testing.T) {
	t.Parallel()
	c, _ := testCache(300)
	for i := range c.shards {
		c.shards[i].maxDecoded = 4
	}
	hosts := make([]string, 300)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("h%d.example.com", i)
		c.put(hosts[i], entry{t: doc("tenant-"+hosts[i], 1, hosts[i]), readAt: c.clock()}, c.begin())
	}
	rounds := 20_000
	if testing.Short() {
		rounds = 2_000
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 3 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range rounds {
				h := hosts[rng.IntN(len(hosts))]
				r := c.lookup(h)
				if r.s == nil {
					continue // evicted by a put (the cache holds as many as it may)
				}
				if tn := r.tenant(); tn == nil || tn.ID != "tenant-"+h {
					errs <- fmt.Errorf("looked up %s, got tenant %v", h, tn)
					return
				}
			}
		})
	}
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(9, 9))
		for v := range int64(rounds / 10) {
			h := hosts[rng.IntN(len(hosts))]
			c.put(h, entry{t: doc("tenant-"+h, v+2, h), readAt: c.clock()}, c.begin())
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkDecoded(t, c)
}

// TestHitsHoldDecoded: a hit on a document not held decoded decodes it,
// right, and holds it, so that the next hits return the same tenant without
// decoding; the shard lets go of others to stay within its bound.
func TestHitsHoldDecoded(t *testing.T) {
	c, err := New(t.Context(), WithRegions("127.0.0.1:1"), WithCacheSize(100), withoutWatch())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.cache.shards) != 1 {
		t.Fatalf("%d shards, want 1", len(c.cache.shards))
	}
	c.cache.shards[0].maxDecoded = 4
	tk := c.cache.begin()
	for i := range 50 {
		h := fmt.Sprintf("h%d.example.com", i)
		c.cache.put(h, entry{t: richDoc(fmt.Sprintf("tenant-%d", i), 1, h), readAt: c.cache.clock()}, tk)
	}
	checkDecoded(t, c.cache)
	for i := range 50 {
		h := fmt.Sprintf("h%d.example.com", i)
		first, err := c.Lookup(t.Context(), h)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(richDoc(fmt.Sprintf("tenant-%d", i), 1, h), first); diff != "" {
			t.Fatalf("%s (-want +got):\n%s", h, diff)
		}
		if again, _ := c.Lookup(t.Context(), h); again != first {
			t.Errorf("%s: the second hit returned another *Tenant than the first", h)
		}
	}
	checkDecoded(t, c.cache)
	// Hot tenants within the bound allocate nothing.
	hot := []string{"h1.example.com", "h2.example.com", "h3.example.com"}
	// Hits let go of documents at random to hold theirs: within the bound
	// that settles with every hot one held.
	held := func() bool {
		for _, h := range hot {
			if r := c.cache.lookup(h); r.t.heldOf(r.i, r.w) == nil {
				return false
			}
		}
		return true
	}
	for range 1000 {
		if held() {
			break
		}
		for _, h := range hot {
			c.Lookup(t.Context(), h)
		}
	}
	if !held() {
		t.Fatal("the hot tenants are not all held decoded after 1000 rounds of hits")
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, h := range hot {
			c.Lookup(t.Context(), h)
		}
	}); n != 0 {
		t.Errorf("hits on %d hot tenants allocate %v times", len(hot), n)
	}
}
