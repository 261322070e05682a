package tcsv1_test

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/catalog/tenant"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// The wire does not tell nil from empty collections, and times come back in
// UTC; cmp compares time.Time with its Equal method, so by instant.
var domainOpts = cmpopts.EquateEmpty()

// Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
const (
	minTimestampSec = -62135596800
	maxTimestampSec = 253402300799
)

func genTime() *rapid.Generator[time.Time] {
	return rapid.Custom(func(t *rapid.T) time.Time {
		if rapid.Bool().Draw(t, "zero") {
			return time.Time{}
		}
		sec := rapid.Int64Range(minTimestampSec, maxTimestampSec).Draw(t, "sec")
		nsec := rapid.Int64Range(0, 999_999_999).Draw(t, "nsec")
		offset := rapid.IntRange(-14*3600, 14*3600).Draw(t, "offset")
		return time.Unix(sec, nsec).In(time.FixedZone("gen", offset))
	})
}

func genProduct() *rapid.Generator[tenant.Product] {
	return rapid.Custom(func(t *rapid.T) tenant.Product {
		return tenant.Product{
			State:   rapid.SampledFrom([]tenant.ProductState{"", tenant.ProductActive, tenant.ProductDeactivated}).Draw(t, "state"),
			Users:   rapid.Int64().Draw(t, "users"),
			Edition: rapid.String().Draw(t, "edition"),
		}
	})
}

func genDatabase() *rapid.Generator[*tenant.Database] {
	return rapid.Custom(func(t *rapid.T) *tenant.Database {
		if rapid.Bool().Draw(t, "nil") {
			return nil
		}
		return &tenant.Database{
			Engine:    rapid.String().Draw(t, "engine"),
			Host:      rapid.String().Draw(t, "host"),
			Port:      rapid.IntRange(math.MinInt32, math.MaxInt32).Draw(t, "port"),
			Name:      rapid.String().Draw(t, "name"),
			Region:    rapid.String().Draw(t, "region"),
			SecretRef: rapid.String().Draw(t, "secretRef"),
		}
	})
}

func genMigration() *rapid.Generator[*tenant.Migration] {
	return rapid.Custom(func(t *rapid.T) *tenant.Migration {
		if rapid.Bool().Draw(t, "nil") {
			return nil
		}
		db := func(label string) tenant.Database {
			if d := genDatabase().Draw(t, label); d != nil {
				return *d
			}
			return tenant.Database{}
		}
		return &tenant.Migration{
			Step: rapid.SampledFrom([]tenant.MoveStep{"", tenant.MovePrepared, tenant.MoveCopied, tenant.MoveSwitched,
				tenant.MoveComplete, tenant.MoveCancelled, tenant.MoveReversed}).Draw(t, "step"),
			ReadOnly: rapid.Bool().Draw(t, "readOnly"),
			From:     db("from"),
			To:       db("to"),
			Started:  genTime().Draw(t, "started"),
			By:       rapid.String().Draw(t, "by"),
		}
	})
}

// genTenant draws any tenant the conversions must carry, valid or not: the
// wire contract is not the place that enforces tenant rules.
func genTenant() *rapid.Generator[*tenant.Tenant] {
	return rapid.Custom(func(t *rapid.T) *tenant.Tenant {
		var products map[string]tenant.Product
		if rapid.Bool().Draw(t, "hasProducts") {
			products = rapid.MapOfN(rapid.String(), genProduct(), 0, 5).Draw(t, "products")
		}
		var labels map[string]string
		if rapid.Bool().Draw(t, "hasLabels") {
			labels = rapid.MapOfN(rapid.String(), rapid.String(), 0, 5).Draw(t, "labels")
		}
		return &tenant.Tenant{
			ID:        rapid.StringMatching(`[a-z0-9-]{0,63}`).Draw(t, "id"),
			Hostnames: rapid.SliceOfN(rapid.String(), 0, 5).Draw(t, "hostnames"),
			Status:    rapid.SampledFrom([]tenant.Status{"", tenant.StatusActive, tenant.StatusSuspended, tenant.StatusDeleted}).Draw(t, "status"),
			Products:  products,
			Database:  genDatabase().Draw(t, "database"),
			Region:    rapid.String().Draw(t, "region"),
			Labels:    labels,
			Version:   rapid.Int64().Draw(t, "version"),
			UpdatedAt: genTime().Draw(t, "updatedAt"),
			UpdatedBy: rapid.String().Draw(t, "updatedBy"),
			Migration: genMigration().Draw(t, "migration"),
		}
	})
}

func genClaims(label string) *rapid.Generator[[]tenant.Claim] {
	return rapid.SliceOfN(rapid.Custom(func(t *rapid.T) tenant.Claim {
		return tenant.Claim{
			Hostname: rapid.String().Draw(t, label+"Hostname"),
			Version:  rapid.Int64().Draw(t, label+"Version"),
		}
	}), 0, 5)
}

func genEvent() *rapid.Generator[*tenant.ChangeEvent] {
	return rapid.Custom(func(t *rapid.T) *tenant.ChangeEvent {
		var tn *tenant.Tenant
		if rapid.Bool().Draw(t, "hasTenant") {
			tn = genTenant().Draw(t, "tenant")
		}
		return &tenant.ChangeEvent{
			TenantID:    rapid.String().Draw(t, "tenantID"),
			Version:     rapid.Int64().Draw(t, "version"),
			Tenant:      tn,
			Claims:      genClaims("claim").Draw(t, "claims"),
			Released:    genClaims("released").Draw(t, "released"),
			CommittedAt: genTime().Draw(t, "committedAt"),
			Resync:      rapid.Bool().Draw(t, "resync"),
			Regions:     rapid.SliceOfN(rapid.String(), 0, 3).Draw(t, "regions"),
			Trace:       tenant.TraceContext{Parent: rapid.String().Draw(t, "traceparent"), State: rapid.String().Draw(t, "tracestate")},
		}
	})
}

// testingT is what the helpers need of a *testing.T or a *rapid.T.
type testingT interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// throughWire marshals m and unmarshals the bytes into a fresh message.
func throughWire[M proto.Message](tb testingT, m M) M {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatalf("marshal: %v", err)
	}
	out := m.ProtoReflect().Type().New().Interface().(M)
	if err := proto.Unmarshal(b, out); err != nil {
		tb.Fatalf("unmarshal: %v", err)
	}
	return out
}

func checkUTC(tb testingT, name string, t time.Time) {
	tb.Helper()
	if !t.IsZero() && t.Location() != time.UTC {
		tb.Errorf("%s = %v: location %v, want UTC", name, t, t.Location())
	}
}

func TestTenantRoundTripProperty(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		want := genTenant().Draw(t, "tenant")
		got, err := tcsv1.TenantFromProto(throughWire(t, tcsv1.TenantToProto(want)))
		if err != nil {
			t.Fatalf("TenantFromProto: %v", err)
		}
		if diff := cmp.Diff(want, got, domainOpts); diff != "" {
			t.Fatalf("domain → proto → wire → proto → domain changed the tenant (-want +got):\n%s", diff)
		}
		checkUTC(t, "updated_at", got.UpdatedAt)
	})
}

func TestEventRoundTripProperty(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		want := genEvent().Draw(t, "event")
		got, err := tcsv1.EventFromProto(throughWire(t, tcsv1.EventToProto(want)))
		if err != nil {
			t.Fatalf("EventFromProto: %v", err)
		}
		if diff := cmp.Diff(want, got, domainOpts); diff != "" {
			t.Fatalf("domain → proto → wire → proto → domain changed the event (-want +got):\n%s", diff)
		}
		checkUTC(t, "committed_at", got.CommittedAt)
		if got.Tenant != nil {
			checkUTC(t, "tenant.updated_at", got.Tenant.UpdatedAt)
		}
	})
}

// fillAll sets every field of m, recursively, to a value that is not the
// default: one entry in each map and list, the last value of each enum. A
// field added to the .proto but forgotten in convert.go then makes the
// proto → domain → proto test below fail.
func fillAll(tb testing.TB, m protoreflect.Message) {
	tb.Helper()
	if m.Descriptor().FullName() == "google.protobuf.Timestamp" {
		m.Set(m.Descriptor().Fields().ByName("seconds"), protoreflect.ValueOfInt64(1_767_225_600))
		m.Set(m.Descriptor().Fields().ByName("nanos"), protoreflect.ValueOfInt32(123_456_789))
		return
	}
	fds := m.Descriptor().Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			v := mp.NewValue()
			if fd.MapValue().Message() != nil {
				fillAll(tb, v.Message())
			} else {
				v = scalar(tb, fd.MapValue())
			}
			mp.Set(scalar(tb, fd.MapKey()).MapKey(), v)
		case fd.IsList():
			l := m.Mutable(fd).List()
			v := l.NewElement()
			if fd.Message() != nil {
				fillAll(tb, v.Message())
			} else {
				v = scalar(tb, fd)
			}
			l.Append(v)
		case fd.Message() != nil:
			fillAll(tb, m.Mutable(fd).Message())
		default:
			m.Set(fd, scalar(tb, fd))
		}
	}
}

func scalar(tb testing.TB, fd protoreflect.FieldDescriptor) protoreflect.Value {
	tb.Helper()
	n := int64(fd.Number()) + 100
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(string(fd.FullName()))
	case protoreflect.Int64Kind:
		return protoreflect.ValueOfInt64(n << 33)
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(int32(n))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		return protoreflect.ValueOfEnum(values.Get(values.Len() - 1).Number())
	}
	tb.Fatalf("field %s: kind %v not handled by the test; teach scalar about it", fd.FullName(), fd.Kind())
	return protoreflect.Value{}
}

func TestEveryProtoFieldConverted(t *testing.T) {
	t.Parallel()
	t.Run("Tenant", func(t *testing.T) {
		t.Parallel()
		want := &tcsv1.Tenant{}
		fillAll(t, want.ProtoReflect())
		d, err := tcsv1.TenantFromProto(want)
		if err != nil {
			t.Fatalf("TenantFromProto: %v", err)
		}
		if diff := cmp.Diff(want, tcsv1.TenantToProto(d), protocmp.Transform()); diff != "" {
			t.Errorf("proto → domain → proto lost fields (-want +got):\n%s", diff)
		}
	})
	t.Run("ChangeEvent", func(t *testing.T) {
		t.Parallel()
		want := &tcsv1.ChangeEvent{}
		fillAll(t, want.ProtoReflect())
		d, err := tcsv1.EventFromProto(want)
		if err != nil {
			t.Fatalf("EventFromProto: %v", err)
		}
		if diff := cmp.Diff(want, tcsv1.EventToProto(d), protocmp.Transform()); diff != "" {
			t.Errorf("proto → domain → proto lost fields (-want +got):\n%s", diff)
		}
	})
}

// TestEveryEnumValueConverted makes adding an enum value to the .proto without
// teaching convert.go about it fail.
func TestEveryEnumValueConverted(t *testing.T) {
	t.Parallel()
	statuses := tcsv1.TenantStatus(0).Descriptor().Values()
	for i := range statuses.Len() {
		want := &tcsv1.Tenant{Status: tcsv1.TenantStatus(statuses.Get(i).Number())}
		d, err := tcsv1.TenantFromProto(want)
		if err != nil {
			t.Errorf("status %v: %v", want.Status, err)
			continue
		}
		if got := tcsv1.TenantToProto(d); got.Status != want.Status {
			t.Errorf("status %v came back as %v", want.Status, got.Status)
		}
	}
	states := tcsv1.ProductState(0).Descriptor().Values()
	for i := range states.Len() {
		state := tcsv1.ProductState(states.Get(i).Number())
		want := &tcsv1.Tenant{Products: map[string]*tcsv1.Product{"jira": {State: state}}}
		d, err := tcsv1.TenantFromProto(want)
		if err != nil {
			t.Errorf("product state %v: %v", state, err)
			continue
		}
		if got := tcsv1.TenantToProto(d); got.Products["jira"].GetState() != state {
			t.Errorf("product state %v came back as %v", state, got.Products["jira"].GetState())
		}
	}
	steps := tcsv1.MoveStep(0).Descriptor().Values()
	for i := range steps.Len() {
		step := tcsv1.MoveStep(steps.Get(i).Number())
		want := &tcsv1.Tenant{Migration: &tcsv1.Migration{Step: step}}
		d, err := tcsv1.TenantFromProto(want)
		if err != nil {
			t.Errorf("move step %v: %v", step, err)
			continue
		}
		if got := tcsv1.TenantToProto(d); got.GetMigration().GetStep() != step {
			t.Errorf("move step %v came back as %v", step, got.GetMigration().GetStep())
		}
	}
	if _, err := tcsv1.TenantFromProto(&tcsv1.Tenant{Migration: &tcsv1.Migration{Step: 99}}); err == nil || !strings.Contains(err.Error(), "migration.step") {
		t.Errorf("unknown move step: %v, want an error naming migration.step", err)
	}
}

// TestDomainAndProtoHaveSameFields fails when a field is added to a domain
// type but not to its message, or the other way round. A domain struct
// field (tenant.TraceContext) counts as its own fields: the message has one
// for each.
func TestDomainAndProtoHaveSameFields(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		domain any
		msg    proto.Message
	}{
		{tenant.Tenant{}, &tcsv1.Tenant{}},
		{tenant.Product{}, &tcsv1.Product{}},
		{tenant.Database{}, &tcsv1.Database{}},
		{tenant.Migration{}, &tcsv1.Migration{}},
		{tenant.Claim{}, &tcsv1.Claim{}},
		{tenant.ChangeEvent{}, &tcsv1.ChangeEvent{}},
	} {
		typ := reflect.TypeOf(tc.domain)
		var domainFields []string
		for f := range typ.Fields() {
			if f.Type == reflect.TypeFor[tenant.TraceContext]() {
				for sub := range f.Type.Fields() {
					domainFields = append(domainFields, f.Name+"."+sub.Name)
				}
				continue
			}
			domainFields = append(domainFields, f.Name)
		}
		protoFields := tc.msg.ProtoReflect().Descriptor().Fields()
		if len(domainFields) != protoFields.Len() {
			t.Errorf("tenant.%s has %d fields %v, tcs.v1.%s has %d: update tenant.proto, convert.go and the generators in this test together",
				typ.Name(), len(domainFields), domainFields, tc.msg.ProtoReflect().Descriptor().Name(), protoFields.Len())
		}
	}
}

func TestNil(t *testing.T) {
	t.Parallel()
	if got := tcsv1.TenantToProto(nil); got != nil {
		t.Errorf("TenantToProto(nil) = %v, want nil", got)
	}
	if got, err := tcsv1.TenantFromProto(nil); got != nil || err != nil {
		t.Errorf("TenantFromProto(nil) = %v, %v, want nil, nil", got, err)
	}
	if got := tcsv1.EventToProto(nil); got != nil {
		t.Errorf("EventToProto(nil) = %v, want nil", got)
	}
	if got, err := tcsv1.EventFromProto(nil); got != nil || err != nil {
		t.Errorf("EventFromProto(nil) = %v, %v, want nil, nil", got, err)
	}
}

// TestCanonicalForms pins the forms the wire cannot tell apart: empty
// collections come back nil, an unset Timestamp is the zero time, a set but
// empty Database stays set, a nil tenant in an event stays nil.
func TestCanonicalForms(t *testing.T) {
	t.Parallel()
	in := &tenant.Tenant{
		Hostnames: []string{},
		Products:  map[string]tenant.Product{},
		Labels:    map[string]string{},
		Database:  &tenant.Database{},
	}
	p := throughWire(t, tcsv1.TenantToProto(in))
	if p.UpdatedAt != nil {
		t.Errorf("zero UpdatedAt went out as %v, want unset", p.UpdatedAt)
	}
	got, err := tcsv1.TenantFromProto(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hostnames != nil || got.Products != nil || got.Labels != nil {
		t.Errorf("empty collections came back as %#v, %#v, %#v, want nil", got.Hostnames, got.Products, got.Labels)
	}
	if got.Database == nil {
		t.Error("empty Database came back nil, want set")
	}
	if !got.UpdatedAt.IsZero() {
		t.Errorf("UpdatedAt = %v, want zero", got.UpdatedAt)
	}

	ev, err := tcsv1.EventFromProto(throughWire(t, tcsv1.EventToProto(&tenant.ChangeEvent{TenantID: "acme", Version: 3})))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Tenant != nil {
		t.Errorf("nil event tenant came back as %+v", ev.Tenant)
	}
	if !ev.Tombstone() {
		t.Error("event without tenant is not a tombstone after the round trip")
	}
}

func TestToProtoSharesNothing(t *testing.T) {
	t.Parallel()
	d := typicalTenant()
	want := d.Clone()
	p := tcsv1.TenantToProto(d)
	p.Hostnames[0] = "changed.example"
	p.Labels["tier"] = "changed"
	p.Database.Host = "changed"
	p.Products["jira"].Users = -1
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("changing the message changed the domain tenant (-want +got):\n%s", diff)
	}
}

func TestFromProtoRejects(t *testing.T) {
	t.Parallel()
	tooLate := &timestamppb.Timestamp{Seconds: maxTimestampSec + 1}
	for _, tc := range []struct {
		name       string
		convert    func() error
		wantFields []string
	}{
		{
			name: "unknown tenant status",
			convert: func() error {
				_, err := tcsv1.TenantFromProto(&tcsv1.Tenant{Id: "acme", Status: 99})
				return err
			},
			wantFields: []string{"status"},
		},
		{
			name: "unknown product state",
			convert: func() error {
				_, err := tcsv1.TenantFromProto(&tcsv1.Tenant{Products: map[string]*tcsv1.Product{"jira": {State: 7}}})
				return err
			},
			wantFields: []string{`products["jira"].state`},
		},
		{
			name: "timestamp out of range",
			convert: func() error {
				_, err := tcsv1.TenantFromProto(&tcsv1.Tenant{UpdatedAt: tooLate})
				return err
			},
			wantFields: []string{"updated_at"},
		},
		{
			name: "event: every bad field named",
			convert: func() error {
				_, err := tcsv1.EventFromProto(&tcsv1.ChangeEvent{
					Tenant:      &tcsv1.Tenant{Status: -1},
					CommittedAt: &timestamppb.Timestamp{Nanos: -1},
				})
				return err
			},
			wantFields: []string{"tenant.status", "committed_at"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.convert()
			if tenant.ErrorCode(err) != tenant.Invalid {
				t.Fatalf("error %v has code %q, want %q", err, tenant.ErrorCode(err), tenant.Invalid)
			}
			var te *tenant.Error
			if !errors.As(err, &te) {
				t.Fatalf("error %v is not a *tenant.Error", err)
			}
			var got []string
			for _, f := range te.Fields {
				got = append(got, f.Field)
			}
			if diff := cmp.Diff(tc.wantFields, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("fields at fault (-want +got):\n%s", diff)
			}
		})
	}
}

// typicalTenant is the tenant the benchmarks use: 2 hostnames, 2 products, a
// database and 3 labels.
func typicalTenant() *tenant.Tenant {
	return &tenant.Tenant{
		ID:        "acme-corp",
		Hostnames: []string{"acme.tcs-demo.net", "jira.acme.com"},
		Status:    tenant.StatusActive,
		Products: map[string]tenant.Product{
			"jira":       {State: tenant.ProductActive, Users: 250, Edition: "premium"},
			"confluence": {State: tenant.ProductActive, Users: 180, Edition: "standard"},
		},
		Database: &tenant.Database{
			Engine:    "postgres",
			Host:      "tenants-7.cluster-c9akciq32xyz.us-east-1.rds.amazonaws.com",
			Port:      5432,
			Name:      "tenant_acme_corp",
			Region:    "us-east-1",
			SecretRef: "arn:aws:secretsmanager:us-east-1:123456789012:secret:tcs/acme-corp-db-AbCdEf",
		},
		Region:    "us-east-1",
		Labels:    map[string]string{"tier": "gold", "owner": "team-sales", "env": "prod"},
		Version:   42,
		UpdatedAt: time.Date(2026, 11, 27, 16, 49, 5, 123456789, time.UTC),
		UpdatedBy: "admin@acme.com",
	}
}

// TestTypicalTenantSize reports the wire size of a typical tenant and of the
// LookupResponse that carries it, and keeps them from growing unnoticed: the
// throughput targets are measured against ~300-byte messages.
func TestTypicalTenantSize(t *testing.T) {
	t.Parallel()
	p := tcsv1.TenantToProto(typicalTenant())
	tenantSize := proto.Size(p)
	resp := &tcsv1.LookupResponse{Tenant: p, Region: "eu-west-1", Age: durationpb.New(1500 * time.Millisecond)}
	respSize := proto.Size(resp)
	t.Logf("typical tenant: %d bytes; LookupResponse carrying it: %d bytes", tenantSize, respSize)
	if tenantSize > 512 {
		t.Errorf("typical tenant is %d bytes, over 512: did a field get bigger than it should?", tenantSize)
	}
}

// FuzzEventFromProto feeds arbitrary bytes to the stream consumer's decoding
// path: whatever decodes must convert without panicking, and whatever
// converts must survive a second round trip unchanged.
func FuzzEventFromProto(f *testing.F) {
	for _, e := range []*tenant.ChangeEvent{
		{TenantID: "acme-corp", Version: 42, Tenant: typicalTenant(), Claims: []tenant.Claim{{Hostname: "jira.acme.com", Version: 3}}},
		{TenantID: "acme-corp", Version: 43, Released: []tenant.Claim{{Hostname: "jira.acme.com", Version: 4}}, Resync: true, Regions: []string{"eu-west-1"}},
		{TenantID: "acme-corp", Version: 44, Tenant: typicalTenant(), Trace: tenant.TraceContext{Parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", State: "v=1"}},
	} {
		b, err := proto.Marshal(tcsv1.EventToProto(e))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p tcsv1.ChangeEvent
		if err := proto.Unmarshal(b, &p); err != nil {
			return
		}
		e, err := tcsv1.EventFromProto(&p)
		if err != nil {
			return
		}
		again, err := tcsv1.EventFromProto(throughWire(t, tcsv1.EventToProto(e)))
		if err != nil {
			t.Fatalf("second EventFromProto: %v", err)
		}
		if diff := cmp.Diff(e, again, domainOpts); diff != "" {
			t.Fatalf("second round trip changed the event (-first +second):\n%s", diff)
		}
	})
}
