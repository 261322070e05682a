package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/tcs-dev/tcs/catalog/placement"
)

// placementSystem has tenants on two database hosts and one without a
// database. Weights by users (ACTIVE products only): db-1.internal acme 70,
// bolt 30 (20 + 10), core 20, dune 5 (its 100 deactivated users do not
// count); db-2.internal echo 10; no database fern 4. Labels load: acme 7,
// bolt 3.
func placementSystem(t *testing.T) *system {
	t.Helper()
	s := startSystem(t, sysOptions{})
	doc := func(id, host, products, labels string) string {
		db := ""
		if host != "" {
			db = fmt.Sprintf(`,"database":{"engine":"postgres","host":%q,"port":5432,"name":%q}`, host, id)
		}
		if labels != "" {
			labels = `,"labels":` + labels
		}
		return fmt.Sprintf(`{"id":%q,"hostnames":["%s.example.com"],"products":%s%s%s}`, id, id, products, db, labels)
	}
	active := func(users int) string { return fmt.Sprintf(`{"state":"ACTIVE","users":%d}`, users) }
	s.create(t, doc("acme", "DB-1.internal", `{"jira":`+active(70)+`}`, `{"load":"7"}`))
	s.create(t, doc("bolt", "db-1.internal", `{"jira":`+active(20)+`,"confluence":`+active(10)+`}`, `{"load":"3"}`))
	s.create(t, doc("core", "db-1.internal", `{"jira":`+active(20)+`}`, ""))
	s.create(t, doc("dune", "db-1.internal", `{"jira":`+active(5)+`,"confluence":{"state":"DEACTIVATED","users":100}}`, ""))
	s.create(t, doc("echo", "db-2.internal", `{"jira":`+active(10)+`}`, ""))
	s.create(t, doc("fern", "", `{"jira":`+active(4)+`}`, ""))
	return s
}

func placementJSON(t *testing.T, out string) placementReport {
	t.Helper()
	var rep placementReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("placement -o json: %v\n%s", err, out)
	}
	return rep
}

// TestPlacementView: the hosts, their tenants, weights and heaviest
// tenants, with tenants without a database apart; by users, tenants or a
// label; --where narrows the tenants; the JSON has the documented schema.
func TestPlacementView(t *testing.T) {
	t.Parallel()
	s := placementSystem(t)

	rep := placementJSON(t, s.mustTcsctl(t, 0, "placement", "-o", "json"))
	want := &placement.Plan{
		Tenants: 6, Weight: 139,
		Hosts: []placement.Host{
			{Host: "db-1.internal", Tenants: 4, Weight: 125, Heaviest: []placement.TenantWeight{{Tenant: "acme", Weight: 70}, {Tenant: "bolt", Weight: 30}, {Tenant: "core", Weight: 20}},
				TenantsAfter: 4, WeightAfter: 125},
			{Host: "db-2.internal", Tenants: 1, Weight: 10, Heaviest: []placement.TenantWeight{{Tenant: "echo", Weight: 10}}, TenantsAfter: 1, WeightAfter: 10},
		},
		NoDatabase: placement.Apart{Tenants: 1, Weight: 4},
		Moves:      []placement.Move{}, Unresolved: []placement.Unresolved{},
	}
	if diff := cmp.Diff(want, rep.Plan); diff != "" || rep.Weight != "users" || rep.Where != "" || rep.Unweighted != 0 {
		t.Errorf("placement -o json: %s %q %d (-want +got):\n%s", rep.Weight, rep.Where, rep.Unweighted, diff)
	}

	// The schema doc.go documents, key for key.
	var raw map[string]any
	if err := json.Unmarshal([]byte(s.mustTcsctl(t, 0, "placement", "-o", "json", "--max-load", "100")), &raw); err != nil {
		t.Fatal(err)
	}
	keys := func(m map[string]any) []string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	for _, c := range []struct {
		what string
		m    any
		want []string
	}{
		{"report", raw, []string{"hosts", "max_load", "moves", "no_database", "tenants", "total_weight", "unresolved", "unweighted", "weight", "where"}},
		{"host", raw["hosts"].([]any)[0], []string{"added", "heaviest", "host", "tenants", "tenants_after", "weight", "weight_after"}},
		{"heaviest", raw["hosts"].([]any)[0].(map[string]any)["heaviest"].([]any)[0], []string{"tenant", "weight"}},
		{"move", raw["moves"].([]any)[0], []string{"from", "tenant", "to", "weight"}},
		{"no_database", raw["no_database"], []string{"tenants", "weight"}},
	} {
		if diff := cmp.Diff(c.want, keys(c.m.(map[string]any))); diff != "" {
			t.Errorf("-o json %s keys (-want +got):\n%s", c.what, diff)
		}
	}

	out := s.mustTcsctl(t, 0, "placement")
	for _, w := range []string{
		"6 tenant(s) on 2 database host(s), total weight 139; weight: users (the users of its ACTIVE products)",
		"HOST ", "db-1.internal  4        125     acme (70), bolt (30), core (20)", "db-2.internal  1        10      echo (10)",
		"(no database)  1        4       -",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("placement table lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "AFTER") || strings.Contains(out, "move") {
		t.Errorf("placement without --max-load shows a plan:\n%s", out)
	}

	// 1 a tenant, only those on db-1, the heaviest 1 (ties by id).
	rep = placementJSON(t, s.mustTcsctl(t, 0, "placement", "-o", "json", "--weight", "tenants", "--top", "1", "--where", `database.host == "db-1.internal"`))
	if rep.Weight != "tenants" || rep.Where != `database.host == "db-1.internal"` || rep.Tenants != 4 || len(rep.Hosts) != 1 ||
		rep.Hosts[0].Weight != 4 || !cmp.Equal(rep.Hosts[0].Heaviest, []placement.TenantWeight{{Tenant: "acme", Weight: 1}}) || rep.NoDatabase.Tenants != 0 {
		t.Errorf("--weight tenants --top 1 --where: %+v", rep)
	}

	// A label's number; tenants without it weigh 0, named on stderr.
	code, stdout, stderr := s.tcsctl(t, context.Background(), "placement", "-o", "yaml", "--weight", "label:load")
	var y placementReport
	if err := yaml.Unmarshal([]byte(stdout), &y); code != 0 || err != nil {
		t.Fatalf("--weight label:load -o yaml: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
	if y.Weight != "label:load" || y.Unweighted != 4 || y.Plan.Weight != 10 || y.Hosts[0].Host != "db-1.internal" || y.Hosts[0].Weight != 10 || y.Hosts[1].Weight != 0 {
		t.Errorf("--weight label:load: %+v", y)
	}
	if !strings.Contains(stderr, "warning: 4 tenant(s) have no label load and weigh 0: core, dune, echo, fern") {
		t.Errorf("--weight label:load stderr: %q", stderr)
	}

	// A label that is not a whole number is an error naming the tenant.
	if err := s.patch(t, "echo", 1, `{"labels":{"load":"lots"}}`); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = s.tcsctl(t, context.Background(), "placement", "--weight", "label:load")
	if code != exitError || stdout != "" || !strings.Contains(stderr, `tenant echo: label load is "lots": --weight label:load needs a whole number, 0 or more`) {
		t.Errorf("a bad label: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// --where keeps it out.
	s.mustTcsctl(t, 0, "placement", "--weight", "label:load", "--where", `id != "echo"`)
}

// TestPlacementPlan: --max-load suggests the moves of the greedy plan,
// --add-host gives it a new host, and a host it cannot fix is named with
// its reason (exit 1), in the table and in JSON.
func TestPlacementPlan(t *testing.T) {
	t.Parallel()
	s := placementSystem(t)

	// db-1 (125) is 25 over 100: bolt (30) is the lightest tenant that
	// alone is enough; db-2 takes it.
	rep := placementJSON(t, s.mustTcsctl(t, 0, "placement", "-o", "json", "--max-load", "100"))
	if diff := cmp.Diff([]placement.Move{{Tenant: "bolt", From: "db-1.internal", To: "db-2.internal", Weight: 30}}, rep.Moves); diff != "" || rep.MaxLoad != 100 || len(rep.Unresolved) != 0 {
		t.Errorf("--max-load 100 (-want +got):\n%s\n%+v", diff, rep)
	}
	if rep.Hosts[0].WeightAfter != 95 || rep.Hosts[0].TenantsAfter != 3 || rep.Hosts[1].WeightAfter != 40 || rep.Hosts[1].TenantsAfter != 2 {
		t.Errorf("--max-load 100: after %+v", rep.Hosts)
	}
	out := s.mustTcsctl(t, 0, "placement", "--max-load", "100")
	for _, w := range []string{"AFTER", "db-1.internal  4        125     95     acme (70)", "1 move(s), weight 30, to bring every host within --max-load 100:",
		"TENANT  FROM           TO             WEIGHT", "bolt    db-1.internal  db-2.internal  30",
		`  tcsctl move bolt --to '{"host":"db-2.internal"}'`} {
		if !strings.Contains(out, w) {
			t.Errorf("--max-load 100 table lacks %q:\n%s", w, out)
		}
	}
	out = s.mustTcsctl(t, 0, "placement", "--max-load", "125")
	if !strings.Contains(out, "every host is within --max-load 125: no moves") {
		t.Errorf("--max-load 125:\n%s", out)
	}

	// Under 75, acme (70) must go, and only a new host has room for it.
	rep = placementJSON(t, s.mustTcsctl(t, 0, "placement", "-o", "json", "--max-load", "75", "--add-host", "DB-3.Internal"))
	if diff := cmp.Diff([]placement.Move{{Tenant: "acme", From: "db-1.internal", To: "db-3.internal", Weight: 70}}, rep.Moves); diff != "" {
		t.Errorf("--max-load 75 --add-host (-want +got):\n%s", diff)
	}
	if h := rep.Hosts[len(rep.Hosts)-1]; h.Host != "db-3.internal" || !h.Added || h.Tenants != 0 || h.WeightAfter != 70 {
		t.Errorf("--add-host: %+v", rep.Hosts)
	}

	// Under 60, acme alone is too heavy for any host: exit 1, named.
	code, stdout, stderr := s.tcsctl(t, context.Background(), "placement", "-o", "json", "--max-load", "60", "--add-host", "db-3.internal")
	rep = placementJSON(t, stdout)
	want := []placement.Unresolved{{Host: "db-1.internal", Weight: 125, Excess: 65, Reason: placement.ReasonTenantTooHeavy, Tenants: []string{"acme"},
		Detail: "tenant acme weighs 70, more than the bound 60 on its own: no host can take it"}}
	if diff := cmp.Diff(want, rep.Unresolved); diff != "" || code != exitFinding || len(rep.Moves) != 0 {
		t.Errorf("--max-load 60: exit %d, moves %v (-want +got):\n%s", code, rep.Moves, diff)
	}
	if !strings.Contains(stderr, "tcsctl placement: 1 host(s) stay over --max-load 60: db-1.internal") {
		t.Errorf("--max-load 60 stderr: %q", stderr)
	}
	code, stdout, _ = s.tcsctl(t, context.Background(), "placement", "--max-load", "60")
	if code != exitFinding || !strings.Contains(stdout, "cannot bring db-1.internal within --max-load 60 (weight 125, 65 over): tenant_too_heavy: tenant acme weighs 70") {
		t.Errorf("--max-load 60 table: exit %d\n%s", code, stdout)
	}
}

// TestPlacementPaging: readPlacement reads every page.
func TestPlacementPaging(t *testing.T) {
	t.Parallel()
	s := placementSystem(t)
	for _, size := range []int{1, 2, 5, 500} {
		ts, unweighted, err := readPlacement(context.Background(), s.api, nil, weightSpec{kind: "tenants"}, size)
		var ids []string
		for _, t := range ts {
			ids = append(ids, t.ID)
		}
		if err != nil || !cmp.Equal(ids, []string{"acme", "bolt", "core", "dune", "echo", "fern"}) || len(unweighted) != 0 {
			t.Errorf("page size %d: %v, %v, %v", size, ids, unweighted, err)
		}
	}
}

// TestPlacementUsage: bad flags are usage errors naming the flag, refused
// before the catalog is asked.
func TestPlacementUsage(t *testing.T) {
	t.Parallel()
	env := map[string]string{"TCS_CATALOG_URL": "http://127.0.0.1:1", "TCS_ADMIN_TOKEN": "x"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--weight", "seats"}, `--weight "seats": want users, tenants or label:NAME`},
		{[]string{"--weight", "label:"}, `--weight "label:": want users, tenants or label:NAME`},
		{[]string{"--top", "-1"}, "--top -1: must not be negative"},
		{[]string{"--max-load", "0"}, "--max-load 0: must be more than 0"},
		{[]string{"--max-load", "-3"}, "--max-load -3: must be more than 0"},
		{[]string{"--max-load", "many"}, `invalid argument "many" for "--max-load"`},
		{[]string{"--add-host", "db-9"}, "--add-host needs --max-load"},
		{[]string{"--add-host", "db-9:5432", "--max-load", "5"}, `--add-host "db-9:5432": `},
		{[]string{"--where", "nofield == 1"}, `--where: path "nofield" at offset 0: unknown field "nofield"`},
		{[]string{"-o", "xml"}, `-o "xml": want table, json or yaml`},
		{[]string{"extra"}, `unexpected arguments ["extra"]`},
	} {
		code, out, errOut := tcsctlIn(t, env, "", append([]string{"placement"}, tc.args...)...)
		if code != exitError || out != "" || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "Run 'tcsctl placement --help' for usage.") {
			t.Errorf("placement %s: exit %d, stdout %q, stderr %q; want 2 and %q", strings.Join(tc.args, " "), code, out, errOut, tc.want)
		}
	}
	// Help lists the flags; completion offers the weights.
	code, out, _ := tcsctlIn(t, nil, "", "placement", "-h")
	for _, w := range []string{"--where", "--weight", "--top", "--max-load", "--add-host", "--output"} {
		if code != exitOK || !strings.Contains(out, w) {
			t.Errorf("placement -h: exit %d, lacks %s:\n%s", code, w, out)
		}
	}
	_, out, _ = tcsctlIn(t, nil, "", "__complete", "placement", "--weight", "")
	if !strings.Contains(out, "users\ntenants\nlabel:\n") {
		t.Errorf("completion of --weight: %q", out)
	}
}
