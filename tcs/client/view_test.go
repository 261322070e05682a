package client

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/catalog/tenant"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// fromView builds a tenant from every accessor of v: what a caller reading
// the view sees.
func fromView(v View) *tenant.Tenant {
	t := &tenant.Tenant{
		ID:        v.ID(),
		Hostnames: slices.Collect(v.Hostnames()),
		Status:    v.Status(),
		Region:    v.Region(),
		Version:   v.Version(),
		UpdatedAt: v.UpdatedAt(),
		UpdatedBy: v.UpdatedBy(),
	}
	for k, p := range v.Products() {
		if t.Products == nil {
			t.Products = map[string]tenant.Product{}
		}
		t.Products[k] = p
	}
	for k, l := range v.Labels() {
		if t.Labels == nil {
			t.Labels = map[string]string{}
		}
		t.Labels[k] = l
	}
	if d, ok := v.Database(); ok {
		t.Database = &d
	}
	if m, ok := v.Migration(); ok {
		t.Migration = &m
	}
	return t
}

// checkView fails t unless every accessor of v answers as the decoded
// tenant want does.
func checkView(t interface {
	Helper()
	Fatalf(string, ...any)
}, v View, want *tenant.Tenant) {
	t.Helper()
	if diff := cmp.Diff(want, fromView(v)); diff != "" {
		t.Fatalf("the view differs from the decoded tenant (-decoded +view):\n%s", diff)
	}
	for _, h := range want.Hostnames {
		if !v.HasHostname(h) {
			t.Fatalf("HasHostname(%q) = false", h)
		}
	}
	if v.HasHostname("not-a-hostname-of-it.example") {
		t.Fatalf("HasHostname of a hostname it does not hold = true")
	}
	for k, p := range want.Products {
		if got, ok := v.Product(k); !ok || got != p {
			t.Fatalf("Product(%q) = %+v, %v; want %+v", k, got, ok, p)
		}
	}
	if _, ok := v.Product("no-such-product"); ok {
		t.Fatalf("Product of a product it has not = true")
	}
	for k, l := range want.Labels {
		if got, ok := v.Label(k); !ok || got != l {
			t.Fatalf("Label(%q) = %q, %v; want %q", k, got, ok, l)
		}
	}
	if _, ok := v.Label("no-such-label"); ok {
		t.Fatalf("Label of a label it has not = true")
	}
	if v.ReadOnly() != want.ReadOnly() || v.Moving() != want.Moving() || v.Deleted() != want.Deleted() {
		t.Fatalf("ReadOnly, Moving, Deleted = %v, %v, %v; want %v, %v, %v",
			v.ReadOnly(), v.Moving(), v.Deleted(), want.ReadOnly(), want.Moving(), want.Deleted())
	}
	got, err := v.Tenant()
	if err != nil || !tenant.Equal(got, want) {
		t.Fatalf("Tenant() = %+v, %v; want %+v", got, err, want)
	}
}

// decodeWire decodes doc as the client would, or fails t.
func decodeWire(t interface{ Fatalf(string, ...any) }, doc []byte) *tenant.Tenant {
	var p tcsv1.Tenant
	if err := proto.Unmarshal(doc, &p); err != nil {
		t.Fatalf("decode: %v", err)
	}
	want, err := tcsv1.TenantFromProto(&p)
	if err != nil {
		t.Fatalf("convert: %v", err)
	}
	return want
}

// genString draws a string: often empty, sometimes long or not ASCII.
func genString() *rapid.Generator[string] {
	return rapid.OneOf(rapid.Just(""), rapid.StringMatching(`[a-z0-9.-]{1,20}`), rapid.String(), rapid.StringN(200, 400, -1))
}

func genTimestamp(t *rapid.T, label string) *timestamppb.Timestamp {
	if !rapid.Bool().Draw(t, label+" set") {
		return nil
	}
	return &timestamppb.Timestamp{
		Seconds: rapid.Int64Range(minTimestamp, maxTimestamp).Draw(t, label+" seconds"),
		Nanos:   rapid.Int32Range(0, 999_999_999).Draw(t, label+" nanos"),
	}
}

func genDatabase(t *rapid.T, label string) *tcsv1.Database {
	return &tcsv1.Database{
		Engine:    genString().Draw(t, label+" engine"),
		Host:      genString().Draw(t, label+" host"),
		Port:      rapid.Int32().Draw(t, label+" port"),
		Name:      genString().Draw(t, label+" name"),
		Region:    genString().Draw(t, label+" region"),
		SecretRef: genString().Draw(t, label+" secret_ref"),
	}
}

// genUnknown draws fields of numbers a tcs.v1 message does not use (or
// uses with another wire type), of every wire type.
func genUnknown(t *rapid.T, label string, known bool) []byte {
	var b []byte
	for i := range rapid.IntRange(0, 3).Draw(t, label+" unknown fields") {
		num := protowire.Number(rapid.IntRange(12, 1<<20).Draw(t, fmt.Sprintf("%s unknown %d number", label, i)))
		typ := rapid.SampledFrom([]protowire.Type{protowire.VarintType, protowire.Fixed32Type, protowire.Fixed64Type,
			protowire.BytesType, protowire.StartGroupType}).Draw(t, fmt.Sprintf("%s unknown %d type", label, i))
		if known {
			// A known number with a wire type it does not have: a
			// decode keeps it as an unknown field, and so must the view.
			switch n := protowire.Number(rapid.IntRange(1, 11).Draw(t, fmt.Sprintf("%s wrong-type %d", label, i))); n {
			case fTenantStatus, fTenantVersion:
				num, typ = n, protowire.BytesType
			default:
				num, typ = n, protowire.VarintType
			}
		}
		b = protowire.AppendTag(b, num, typ)
		switch typ {
		case protowire.VarintType:
			b = protowire.AppendVarint(b, rapid.Uint64().Draw(t, "varint"))
		case protowire.Fixed32Type:
			b = protowire.AppendFixed32(b, rapid.Uint32().Draw(t, "fixed32"))
		case protowire.Fixed64Type:
			b = protowire.AppendFixed64(b, rapid.Uint64().Draw(t, "fixed64"))
		case protowire.BytesType:
			b = protowire.AppendBytes(b, rapid.SliceOfN(rapid.Byte(), 0, 40).Draw(t, "bytes"))
		case protowire.StartGroupType:
			b = protowire.AppendTag(b, 1, protowire.VarintType)
			b = protowire.AppendVarint(b, 7)
			b = protowire.AppendTag(b, num, protowire.EndGroupType)
		}
	}
	return b
}

func withUnknown(t *rapid.T, m proto.Message, label string) {
	if u := genUnknown(t, label, false); len(u) > 0 {
		m.ProtoReflect().SetUnknown(protoreflect.RawFields(u))
	}
}

// genWireTenant draws a tcs.v1.Tenant with any field set or not, empty or
// not, and unknown fields in it and in its messages.
func genWireTenant(t *rapid.T) *tcsv1.Tenant {
	p := &tcsv1.Tenant{
		Id:        genString().Draw(t, "id"),
		Status:    tcsv1.TenantStatus(rapid.IntRange(0, 3).Draw(t, "status")),
		Region:    genString().Draw(t, "region"),
		Version:   rapid.Int64().Draw(t, "version"),
		UpdatedAt: genTimestamp(t, "updated_at"),
		UpdatedBy: genString().Draw(t, "updated_by"),
	}
	switch rapid.IntRange(0, 3).Draw(t, "hostnames kind") {
	case 1:
		p.Hostnames = rapid.SliceOfN(genString(), 1, 5).Draw(t, "hostnames")
	case 2: // long lists of long hostnames
		p.Hostnames = rapid.SliceOfN(rapid.StringMatching(`[a-z]{60,200}\.example\.com`), 100, 300).Draw(t, "many hostnames")
	case 3:
		p.Hostnames = []string{"", ""}
	}
	if n := rapid.IntRange(0, 5).Draw(t, "products"); n > 0 {
		p.Products = map[string]*tcsv1.Product{}
		for i := range n {
			pr := &tcsv1.Product{
				State:   tcsv1.ProductState(rapid.IntRange(0, 2).Draw(t, "product state")),
				Users:   rapid.Int64().Draw(t, "users"),
				Edition: genString().Draw(t, "edition"),
			}
			withUnknown(t, pr, "product")
			p.Products[fmt.Sprintf("%s-%d", genString().Draw(t, "product key"), i)] = pr
		}
	}
	if n := rapid.IntRange(0, 5).Draw(t, "labels"); n > 0 {
		p.Labels = map[string]string{}
		for range n {
			p.Labels[genString().Draw(t, "label key")] = genString().Draw(t, "label")
		}
	}
	if rapid.Bool().Draw(t, "database set") {
		p.Database = genDatabase(t, "database")
		if rapid.Bool().Draw(t, "database empty") {
			p.Database = &tcsv1.Database{}
		}
		withUnknown(t, p.Database, "database")
	}
	if rapid.Bool().Draw(t, "migration set") {
		p.Migration = &tcsv1.Migration{
			Step:     tcsv1.MoveStep(rapid.IntRange(0, 6).Draw(t, "step")),
			ReadOnly: rapid.Bool().Draw(t, "read_only"),
			Started:  genTimestamp(t, "started"),
			By:       genString().Draw(t, "by"),
		}
		if rapid.Bool().Draw(t, "from set") {
			p.Migration.From = genDatabase(t, "from")
		}
		if rapid.Bool().Draw(t, "to set") {
			p.Migration.To = genDatabase(t, "to")
		}
		withUnknown(t, p.Migration, "migration")
	}
	if p.UpdatedAt != nil {
		withUnknown(t, p.UpdatedAt, "updated_at")
	}
	return p
}

// interleave inserts unknown fields between the top-level fields of doc.
func interleave(t *rapid.T, doc []byte) []byte {
	var out []byte
	for len(doc) > 0 {
		_, _, n := protowire.ConsumeField(doc)
		if n < 0 {
			t.Fatalf("marshalled document does not parse")
		}
		out = append(out, genUnknown(t, "top", rapid.Bool().Draw(t, "known number"))...)
		out = append(out, doc[:n]...)
		doc = doc[n:]
	}
	return append(out, genUnknown(t, "top end", false)...)
}

// TestViewProperty: for any tenant document (every field set or not,
// empty, long, with unknown fields anywhere), every accessor of its View
// answers as the decoded tenant does.
func TestViewProperty(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		p := genWireTenant(t)
		doc, err := proto.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		doc = interleave(t, doc)
		want := decodeWire(t, doc)
		v := View{doc: doc}
		if doc == nil {
			v.doc = []byte{}
		}
		checkView(t, v, want)
	})
}

// TestViewOfCachedDocuments: the cache's own records, through Client.LookupView.
func TestViewOfCachedDocuments(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(rt *rapid.T) {
		c, err := New(context.Background(), WithRegions("127.0.0.1:1"), WithTTL(time.Hour), withoutWatch())
		if err != nil {
			rt.Fatal(err)
		}
		defer c.Close()
		// What the cache holds has come from the wire and been converted.
		want, err := tcsv1.TenantFromProto(genWireTenant(rt))
		if err != nil {
			rt.Fatal(err)
		}
		const h = "acme.example.com"
		if !c.cache.put(h, entry{t: want, readAt: c.cache.clock()}, c.cache.begin()) {
			rt.Fatal("not cached")
		}
		v, err := c.LookupView(context.Background(), h)
		if err != nil {
			rt.Fatal(err)
		}
		checkView(rt, v, want)
	})
}

func TestViewUnknownEnums(t *testing.T) {
	t.Parallel()
	doc, err := proto.Marshal(&tcsv1.Tenant{Id: "acme", Status: 9, Products: map[string]*tcsv1.Product{"jira": {State: 7, Users: 3}},
		Migration: &tcsv1.Migration{Step: 42}})
	if err != nil {
		t.Fatal(err)
	}
	v := View{doc: doc}
	if v.ID() != "acme" || v.Status() != "" {
		t.Errorf("ID, Status = %q, %q; want acme and the zero status", v.ID(), v.Status())
	}
	if p, ok := v.Product("jira"); !ok || p != (tenant.Product{Users: 3}) {
		t.Errorf("Product(jira) = %+v, %v; want 3 users, no state", p, ok)
	}
	if m, ok := v.Migration(); !ok || m.Step != "" {
		t.Errorf("Migration() = %+v, %v; want the zero step", m, ok)
	}
	if tn, err := v.Tenant(); err == nil || !strings.Contains(err.Error(), "unknown tenant status 9") {
		t.Errorf("Tenant() = %+v, %v; want an error naming the status", tn, err)
	}
	bad, _ := proto.Marshal(&tcsv1.Tenant{Id: "acme", UpdatedAt: &timestamppb.Timestamp{Seconds: maxTimestamp + 1}})
	v = View{doc: bad}
	if !v.UpdatedAt().IsZero() {
		t.Errorf("an invalid timestamp: %v, want the zero time", v.UpdatedAt())
	}
	if _, err := v.Tenant(); err == nil || !strings.Contains(err.Error(), "updated_at") {
		t.Errorf("Tenant() of an invalid timestamp: %v, want an error naming updated_at", err)
	}
}

// TestViewZero: the zero View (what errors come with) answers zero values.
func TestViewZero(t *testing.T) {
	t.Parallel()
	var v View
	if diff := cmp.Diff(&tenant.Tenant{}, fromView(v)); diff != "" {
		t.Errorf("zero view (-want +got):\n%s", diff)
	}
	if tn, err := v.Tenant(); tn != nil || err != nil {
		t.Errorf("Tenant() of the zero view = %+v, %v; want nil, nil", tn, err)
	}
	// An empty document is a tenant with no field set, not no tenant.
	if tn, err := (View{doc: []byte{}}).Tenant(); err != nil || tn == nil || tn.ID != "" {
		t.Errorf("Tenant() of an empty document = %+v, %v; want an empty tenant", tn, err)
	}
}

// TestViewMalformed: a damaged document (the cache never holds one) makes
// no accessor panic; each returns what it read before the damage and the
// zero value after it, and Tenant reports the error.
func TestViewMalformed(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		p := genWireTenant(t)
		p.Id = "acme-" + p.Id
		doc, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		idEnd := protowire.SizeTag(fTenantID) + protowire.SizeBytes(len(p.Id)) // Marshal writes field 1 first
		var bad []byte
		switch rapid.IntRange(0, 2).Draw(t, "damage") {
		case 0: // truncated
			k := rapid.IntRange(0, len(doc)-1).Draw(t, "cut")
			bad = doc[:k]
			wantID := ""
			if k >= idEnd {
				wantID = p.Id
			}
			if got := (View{doc: bad}).ID(); got != wantID {
				t.Fatalf("cut at %d: ID %q, want %q", k, got, wantID)
			}
		case 1: // bytes overwritten
			bad = slices.Clone(doc)
			for range rapid.IntRange(1, 8).Draw(t, "flips") {
				bad[rapid.IntRange(0, len(bad)-1).Draw(t, "at")] = rapid.Byte().Draw(t, "byte")
			}
		case 2: // not a document at all
			bad = rapid.SliceOfN(rapid.Byte(), 1, 600).Draw(t, "garbage")
		}
		v := View{doc: bad}
		fromView(v) // every accessor, none may panic
		v.HasHostname("x")
		v.Product("x")
		v.Label("x")
		v.ReadOnly()
		v.Moving()
		var q tcsv1.Tenant
		if proto.Unmarshal(bad, &q) != nil {
			if tn, err := v.Tenant(); err == nil {
				t.Fatalf("Tenant() of a document that does not decode = %+v, nil", tn)
			}
		}
	})
}

// TestViewFieldsCovered ties the View to tenant.proto: it reads every
// field of tcs.v1.Tenant and of the messages in it, so a field added there
// fails here until the View (and fromView) reads it.
func TestViewFieldsCovered(t *testing.T) {
	t.Parallel()
	covered := map[protoreflect.FullName][]protowire.Number{
		"tcs.v1.Tenant":    {fTenantID, fTenantHostnames, fTenantStatus, fTenantProducts, fTenantDatabase, fTenantRegion, fTenantLabels, fTenantVersion, fTenantUpdatedAt, fTenantUpdatedBy, fTenantMigration},
		"tcs.v1.Product":   {fProductState, fProductUsers, fProductEdition},
		"tcs.v1.Database":  {fDatabaseEngine, fDatabaseHost, fDatabasePort, fDatabaseName, fDatabaseRegion, fDatabaseSecretRef},
		"tcs.v1.Migration": {fMigrationStep, fMigrationReadOnly, fMigrationFrom, fMigrationTo, fMigrationStarted, fMigrationBy},
	}
	for _, m := range []proto.Message{&tcsv1.Tenant{}, &tcsv1.Product{}, &tcsv1.Database{}, &tcsv1.Migration{}} {
		d := m.ProtoReflect().Descriptor()
		var nums []protowire.Number
		for i := range d.Fields().Len() {
			nums = append(nums, d.Fields().Get(i).Number())
		}
		slices.Sort(nums)
		want := slices.Sorted(slices.Values(covered[d.FullName()]))
		if !slices.Equal(nums, want) {
			t.Errorf("%s has fields %v; the View reads %v", d.FullName(), nums, want)
		}
	}
}

// TestViewOutlivesEntry: a View keeps answering with its document after the
// entry is replaced by a newer version, invalidated, evicted, and its table
// rebuilt (and collected, were it not for the View).
func TestViewOutlivesEntry(t *testing.T) {
	t.Parallel()
	c, err := New(context.Background(), WithRegions("127.0.0.1:1"), WithCacheSize(2_000), WithTTL(time.Hour), withoutWatch())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	const n = 200
	want := make([]*tenant.Tenant, n)
	views := make([]View, n)
	tables := map[*table]bool{}
	for i := range n {
		h := fmt.Sprintf("host-%d.example.com", i)
		want[i] = &tenant.Tenant{ID: fmt.Sprintf("t-%d", i), Version: 3, Hostnames: []string{h, "www." + h}, Status: tenant.StatusActive,
			Labels: map[string]string{"i": fmt.Sprint(i)}, Database: &tenant.Database{Engine: "postgres", Host: "db-" + h, Port: 5432, Name: "t"}}
		if !c.cache.put(h, entry{t: want[i], readAt: c.cache.clock()}, c.cache.begin()) {
			t.Fatalf("put %s refused", h)
		}
		if views[i], err = c.LookupView(ctx, h); err != nil {
			t.Fatal(err)
		}
		sh, _ := c.cache.shard(h)
		tables[sh.tab.Load()] = true
	}
	for i := range n {
		h := fmt.Sprintf("host-%d.example.com", i)
		switch i % 3 {
		case 0: // a newer version replaces it: the view keeps the old one
			newer := want[i].Clone()
			newer.Version = 4
			newer.Labels["i"] = "newer"
			c.cache.put(h, entry{t: newer, readAt: c.cache.clock()}, c.cache.begin())
			if v, err := c.LookupView(ctx, h); err != nil || v.Version() != 4 {
				t.Fatalf("%s after the newer version: %d, %v", h, v.Version(), err)
			}
		case 1:
			c.cache.invalidate(want[i].ID, 5, []string{h})
		}
	}
	// Fill the cache several times over: evictions and rebuilds.
	for i := range 20_000 {
		h := fmt.Sprintf("filler-%d.example.com", i)
		c.cache.put(h, entry{t: doc(fmt.Sprintf("f-%d", i), 1, h), readAt: c.cache.clock()}, c.cache.begin())
	}
	for i := range c.cache.shards {
		if tables[c.cache.shards[i].tab.Load()] {
			t.Fatalf("shard %d still has the table the views were taken from: no rebuild", i)
		}
	}
	runtime.GC()
	for i, v := range views {
		checkView(t, v, want[i])
	}
}

// TestViewAllocatesNothing: a hit through LookupView, and reading every
// field of the view, allocates nothing, for tenants held decoded or not.
func TestViewAllocatesNothing(t *testing.T) {
	c, names := newBenchClient(t, 1000)
	ctx := context.Background()
	rich := richDoc("rich", 2, "rich.example.com", "www.rich.example.com")
	rich.Migration = &tenant.Migration{Step: tenant.MoveCopied, ReadOnly: true, From: *rich.Database, To: *rich.Database, By: "ops"}
	c.cache.put("rich.example.com", entry{t: rich, readAt: c.cache.clock(), region: "eu-west-1"}, c.cache.begin())
	// That put may have evicted one of names: use two still cached.
	names = slices.DeleteFunc(slices.Clone(names), func(h string) bool { return c.cache.lookup(h).s == nil })
	// Let go of every decoded tenant: the views must not need them.
	for i := range c.cache.shards {
		sh := &c.cache.shards[i]
		sh.mu.Lock()
		tab := sh.tab.Load()
		for j := range tab.held {
			sh.letGo(tab, j)
		}
		sh.mu.Unlock()
	}
	var sink int
	allocs := testing.AllocsPerRun(1000, func() {
		for _, h := range []string{names[7], "rich.example.com"} {
			v, err := c.LookupView(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			sink += readAll(v)
			if v.HasHostname("x") || v.ReadOnly() || v.Moving() || v.Deleted() {
				sink++
			}
			if _, ok := v.Product("jira"); ok {
				sink++
			}
			if _, ok := v.Label("rev"); ok {
				sink++
			}
		}
	})
	if allocs != 0 {
		t.Errorf("a view hit and its accessors allocate %v times", allocs)
	}
	allocs = testing.AllocsPerRun(1000, func() {
		if v, m, err := c.LookupViewMeta(ctx, names[9]); err != nil || !m.Cached || m.Region != "eu-west-1" || v.ID() == "" {
			t.Fatal(v, m, err)
		}
	})
	if allocs != 0 {
		t.Errorf("a hit through LookupViewMeta allocates %v times", allocs)
	}
	for i := range c.cache.shards {
		if d := c.cache.shards[i].decoded; d != 0 {
			t.Fatalf("shard %d holds %d decoded tenants after view hits, want 0: a view hit decoded", i, d)
		}
	}
	c.cache.put("nobody.example.com", entry{readAt: c.cache.clock()}, c.cache.begin())
	allocs = testing.AllocsPerRun(1000, func() {
		if _, err := c.LookupView(ctx, "nobody.example.com"); err != ErrNotFound {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a negative view hit allocates %v times", allocs)
	}
	_ = sink
}

// FuzzView: no document, however damaged, makes a View panic, and Tenant
// fails exactly when a decode does.
func FuzzView(f *testing.F) {
	rich, err := encodeDoc(richDoc("acme", 3, "acme.example.com", "www.acme.example.com"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rich)
	f.Add(rich[:len(rich)/2])
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, doc []byte) {
		v := View{doc: doc}
		fromView(v)
		v.HasHostname("acme.example.com")
		v.Product("jira")
		v.Label("rev")
		v.ReadOnly()
		v.Moving()
		var p tcsv1.Tenant
		decodeErr := proto.Unmarshal(doc, &p)
		if decodeErr == nil {
			_, decodeErr = tcsv1.TenantFromProto(&p)
		}
		if _, err := v.Tenant(); (err == nil) != (decodeErr == nil) {
			t.Fatalf("Tenant() error %v; decode error %v", err, decodeErr)
		}
	})
}
