package tenant

import (
	"reflect"
	"testing"
	"time"
)

func equalBase() *Tenant {
	return &Tenant{
		ID:        "acme",
		Hostnames: []string{"acme.example.com", "www.acme.example.com"},
		Status:    StatusActive,
		Products:  map[string]Product{"jira": {State: ProductActive, Users: 10, Edition: "premium"}},
		Database:  &Database{Engine: "postgres", Host: "db.internal", Port: 5432, Name: "acme"},
		Region:    "eu-west-1",
		Labels:    map[string]string{"tier": "gold"},
		Version:   3,
		UpdatedAt: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC),
		UpdatedBy: "admin",
	}
}

func TestEqual(t *testing.T) {
	t.Parallel()
	base := equalBase()
	if !Equal(base, base.Clone()) {
		t.Error("a document and its clone differ")
	}
	if !Equal(nil, nil) || Equal(base, nil) || Equal(nil, base) {
		t.Error("nil documents: want equal only to each other")
	}

	// What JSON round trips and time zones change without changing the
	// document.
	empty := &Tenant{ID: "gone", Hostnames: []string{}, Products: map[string]Product{}, Labels: map[string]string{}}
	if !Equal(empty, &Tenant{ID: "gone"}) {
		t.Error("nil and empty hostnames, products and labels differ")
	}
	zoned := base.Clone()
	zoned.UpdatedAt = base.UpdatedAt.In(time.FixedZone("UTC+2", 2*3600))
	if !Equal(base, zoned) {
		t.Error("the same instant in another zone differs")
	}

	// Every field counts: change each in turn (reflection, so that a field
	// added to Tenant and forgotten by Equal fails here).
	typ := reflect.TypeFor[Tenant]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		changed := base.Clone()
		v := reflect.ValueOf(changed).Elem().Field(i)
		switch {
		case f.Type == reflect.TypeFor[time.Time]():
			changed.UpdatedAt = changed.UpdatedAt.Add(time.Nanosecond)
		case f.Type.Kind() == reflect.String:
			v.SetString(v.String() + "x")
		case f.Type.Kind() == reflect.Int64:
			v.SetInt(v.Int() + 1)
		case f.Type.Kind() == reflect.Slice:
			v.Set(reflect.Append(v, reflect.Zero(f.Type.Elem())))
		case f.Type.Kind() == reflect.Map:
			v.SetMapIndex(reflect.ValueOf("added"), reflect.Zero(f.Type.Elem()))
		case f.Type == reflect.TypeFor[*Database]():
			for _, d := range []*Database{nil, {Engine: "postgres", Host: "db.internal", Port: 5433, Name: "acme"}} {
				changed.Database = d
				if Equal(base, changed) || Equal(changed, base) {
					t.Errorf("Database %+v: documents equal, want different", d)
				}
			}
			continue
		case f.Type == reflect.TypeFor[*Migration]():
			m := Migration{Step: MovePrepared, ReadOnly: true, From: Database{Engine: "postgres", Host: "db.internal", Port: 5432, Name: "acme"},
				To: Database{Engine: "postgres", Host: "db2.internal", Port: 5432, Name: "acme"}, Started: time.Unix(100, 0), By: "ops"}
			changes := []func(*Migration){
				func(*Migration) {},
				func(m *Migration) { m.Step = MoveCopied },
				func(m *Migration) { m.ReadOnly = false },
				func(m *Migration) { m.From.Port++ },
				func(m *Migration) { m.To.Name = "x" },
				func(m *Migration) { m.Started = m.Started.Add(time.Nanosecond) },
				func(m *Migration) { m.By = "other" },
			}
			withM := base.Clone()
			withM.Migration = &m
			if Equal(base, withM) || Equal(withM, base) {
				t.Error("a document with a migration equals one without")
			}
			for i, change := range changes[1:] {
				c := withM.Clone()
				change(c.Migration)
				if Equal(withM, c) || Equal(c, withM) {
					t.Errorf("migration change %d: documents equal, want different", i+1)
				}
			}
			continue
		default:
			t.Fatalf("field %s of type %s: teach this test how to change it", f.Name, f.Type)
		}
		if Equal(base, changed) || Equal(changed, base) {
			t.Errorf("field %s changed: documents equal, want different", f.Name)
		}
	}

	reordered := base.Clone()
	reordered.Hostnames[0], reordered.Hostnames[1] = reordered.Hostnames[1], reordered.Hostnames[0]
	if Equal(base, reordered) {
		t.Error("hostnames in another order: equal, want different (the order is served)")
	}
}
