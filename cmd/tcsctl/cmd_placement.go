package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/catalog/placement"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/catalog/tenantexpr"
)

// weightSpec is --weight: what a tenant costs its database host.
type weightSpec struct {
	kind  string // "users", "tenants" or "label"
	label string // the label's name, for "label"
}

func parseWeight(s string) (weightSpec, error) {
	switch {
	case s == "users" || s == "tenants":
		return weightSpec{kind: s}, nil
	case strings.HasPrefix(s, "label:") && len(s) > len("label:"):
		return weightSpec{kind: "label", label: strings.TrimPrefix(s, "label:")}, nil
	}
	return weightSpec{}, usagef("--weight %q: want users, tenants or label:NAME", s)
}

func (w weightSpec) String() string {
	if w.kind == "label" {
		return "label:" + w.label
	}
	return w.kind
}

// describe says what the weight is, for the table's heading.
func (w weightSpec) describe() string {
	switch w.kind {
	case "users":
		return "users (the users of its ACTIVE products)"
	case "tenants":
		return "tenants (1 a tenant)"
	}
	return fmt.Sprintf("label %s (a tenant without it weighs 0)", w.label)
}

// weigh returns a tenant document's weight, and false if --weight
// label:NAME and it has no such label.
func (w weightSpec) weigh(doc map[string]any) (int64, bool, error) {
	switch w.kind {
	case "tenants":
		return 1, true, nil
	case "label":
		labels, _ := doc["labels"].(map[string]any)
		v, ok := labels[w.label].(string)
		if !ok {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, true, fmt.Errorf("label %s is %q: --weight %s needs a whole number, 0 or more", w.label, v, w)
		}
		return n, true, nil
	}
	products, _ := doc["products"].(map[string]any)
	var sum int64
	for _, p := range products {
		p, _ := p.(map[string]any)
		if p["state"] != string(tenant.ProductActive) {
			continue
		}
		// Users are bounded (tenant.MaxUsers), and so is a tenant's number
		// of products: the sum fits.
		if u, ok := p["users"].(float64); ok && u > 0 {
			sum += int64(u)
		}
	}
	return sum, true, nil
}

// placementReport is what placement -o json prints: the plan, and how it
// was weighed and selected.
type placementReport struct {
	Weight string `json:"weight"`
	Where  string `json:"where"`
	// Unweighted counts the tenants --weight label:NAME weighed 0 for want
	// of the label.
	Unweighted int `json:"unweighted"`
	*placement.Plan
}

// placementPageSize is the catalog's largest list page.
const placementPageSize = 500

// readPlacement lists every live tenant matching where (nil: all), pageSize
// at a time, and returns each with its database host and weight, and the
// ids of those weighed 0 for want of the label.
func readPlacement(ctx context.Context, cat *httpclient.Client, where *tenantexpr.Expr, w weightSpec, pageSize int) ([]placement.Tenant, []string, error) {
	var out []placement.Tenant
	var unweighted []string
	hosts := map[string]string{} // one copy of each host name
	for token := ""; ; {
		var page httpclient.ListPage
		err := retry(ctx, 5, func() (err error) {
			page, err = cat.List(ctx, token, pageSize)
			return err
		})
		if err != nil {
			return nil, nil, fmt.Errorf("listing tenants%s: %w", afterPage(token), err)
		}
		for _, doc := range page.Tenants {
			id, _ := doc["id"].(string)
			if where != nil {
				ok, err := where.Match(doc)
				if err != nil {
					return nil, nil, fmt.Errorf("tenant %s: evaluating --where: %w", id, err)
				}
				if !ok {
					continue
				}
			}
			weight, has, err := w.weigh(doc)
			if err != nil {
				return nil, nil, fmt.Errorf("tenant %s: %w", id, err)
			}
			if !has {
				unweighted = append(unweighted, id)
			}
			db, _ := doc["database"].(map[string]any)
			h, _ := db["host"].(string)
			if c, ok := hosts[h]; ok {
				h = c
			} else {
				hosts[h] = h
			}
			out = append(out, placement.Tenant{ID: id, Host: h, Weight: weight})
		}
		if page.NextPageToken == "" {
			return out, unweighted, nil
		}
		token = page.NextPageToken
	}
}

func newPlacementCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "placement [--where EXPR] [--weight users|tenants|label:NAME] [--top K] [--max-load N [--add-host NAME]…] [-o table|json|yaml]",
		Short: "tenants and load per database host, and moves that bring every host under a load",
		Long: "placement reads every live tenant (those matching --where) from the catalog and shows, per database host, its\n" +
			"tenants, their total weight and the heaviest of them; tenants without a database are counted apart.\n" +
			"With --max-load it suggests moves (tenant → host) that bring every host to that weight or under, and names\n" +
			"the hosts it cannot fix and why (exit 1). It writes nothing: the moves are the input of tcsctl move, and the\n" +
			"table output ends with their tcsctl move command lines.\n" +
			"See the package documentation for the planner's rules and the -o json schema. " + exitCodesHelp,
		Args: noArgs,
	}
	fs := cmd.Flags()
	var conn connFlags
	conn.register(fs, e.getenv)
	where := fs.String("where", "", `count only the tenants matching this condition, e.g. 'region == "eu-west-1"' (the language of transform --where)`)
	weightFlag := fs.String("weight", "users", "what a tenant weighs: users (the users of its ACTIVE products), tenants (1 each), or label:NAME (the label's whole number; 0 without it)")
	top := fs.Int("top", 3, "heaviest tenants listed per host (0: none)")
	maxLoad := fs.Int64("max-load", 0, "suggest moves that bring every host to this weight or under (default: no moves)")
	var addHosts stringList
	fs.Var(&addHosts, "add-host", "a new, empty database host the moves may use (repeatable; with --max-load)")
	out := addOutput(fs, "table", "json", "yaml")
	out.complete(cmd)
	_ = cmd.RegisterFlagCompletionFunc("weight", cobra.FixedCompletions([]string{"users", "tenants", "label:"}, cobra.ShellCompDirectiveNoFileComp|cobra.ShellCompDirectiveNoSpace))
	cmd.RunE = e.action(func(ctx context.Context, _ []string) error {
		if err := out.check(); err != nil {
			return err
		}
		w, err := parseWeight(*weightFlag)
		if err != nil {
			return err
		}
		if *top < 0 {
			return usagef("--top %d: must not be negative", *top)
		}
		if fs.Changed("max-load") && *maxLoad <= 0 {
			return usagef("--max-load %d: must be more than 0", *maxLoad)
		}
		if len(addHosts) > 0 && *maxLoad == 0 {
			return usagef("--add-host needs --max-load: an added host only takes moves")
		}
		added := make([]string, 0, len(addHosts))
		for _, h := range addHosts {
			n, err := tenant.NormalizeDatabaseHost(h)
			if err != nil {
				return usagef("--add-host %q: %s", h, strings.Join(fieldReasons(err), "; "))
			}
			added = append(added, n)
		}
		var cond *tenantexpr.Expr
		if *where != "" {
			if cond, err = tenantexpr.Parse(*where); err != nil {
				return usagef("--where: %v", err)
			}
		}
		c, err := conn.client(e)
		if err != nil {
			return err
		}
		defer c.Close()
		tenants, unweighted, err := readPlacement(ctx, c.catalog, cond, w, placementPageSize)
		if err != nil {
			return err
		}
		plan, err := placement.Build(tenants, placement.Options{Top: *top, MaxLoad: *maxLoad, AddHosts: added})
		if err != nil {
			return err
		}
		if len(unweighted) > 0 {
			sort.Strings(unweighted)
			fmt.Fprintf(e.stderr, "tcsctl placement: warning: %d tenant(s) have no label %s and weigh 0: %s\n", len(unweighted), w.label, examples(unweighted, 5))
		}
		rep := placementReport{Weight: w.String(), Unweighted: len(unweighted), Plan: plan}
		if cond != nil {
			rep.Where = cond.String()
		}
		if err := out.print(e.stdout, rep, func(wr io.Writer) error { return writePlacement(wr, rep, w) }); err != nil {
			return err
		}
		if n := len(plan.Unresolved); n > 0 {
			names := make([]string, n)
			for i, u := range plan.Unresolved {
				names[i] = u.Host
			}
			return finding("%d host(s) stay over --max-load %d: %s", n, *maxLoad, strings.Join(names, ", "))
		}
		return nil
	})
	return cmd
}

// fieldReasons are the reasons of a catalog/tenant error's fields, or its
// text.
func fieldReasons(err error) []string {
	var out []string
	for _, f := range tenant.ErrorFields(err) {
		out = append(out, f.Reason)
	}
	if len(out) == 0 {
		out = append(out, err.Error())
	}
	return out
}

// examples is the first n of ids, and how many more there are.
func examples(ids []string, n int) string {
	if len(ids) <= n {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:n], ", "), len(ids)-n)
}

// writePlacement is placement's table: the hosts, then with --max-load the
// moves and the hosts left over.
func writePlacement(w io.Writer, rep placementReport, ws weightSpec) error {
	p := rep.Plan
	sel := ""
	if rep.Where != "" {
		sel = " matching " + rep.Where
	}
	fmt.Fprintf(w, "%d tenant(s)%s on %d database host(s), total weight %d; weight: %s\n", p.Tenants, sel, len(p.Hosts)-countAdded(p.Hosts), p.Weight, ws.describe())
	planned := p.MaxLoad > 0
	header := []string{"HOST", "TENANTS", "WEIGHT"}
	if planned {
		header = append(header, "AFTER")
	}
	header = append(header, "HEAVIEST")
	var rows [][]string
	for _, h := range p.Hosts {
		name := h.Host
		if h.Added {
			name += " (added)"
		}
		row := []string{name, strconv.Itoa(h.Tenants), strconv.FormatInt(h.Weight, 10)}
		if planned {
			row = append(row, strconv.FormatInt(h.WeightAfter, 10))
		}
		heavy := make([]string, len(h.Heaviest))
		for i, t := range h.Heaviest {
			heavy[i] = fmt.Sprintf("%s (%d)", t.Tenant, t.Weight)
		}
		rows = append(rows, append(row, strings.Join(heavy, ", ")))
	}
	if p.NoDatabase.Tenants > 0 {
		row := []string{"(no database)", strconv.Itoa(p.NoDatabase.Tenants), strconv.FormatInt(p.NoDatabase.Weight, 10)}
		if planned {
			row = append(row, "")
		}
		rows = append(rows, append(row, ""))
	}
	if err := table(w, header, rows); err != nil {
		return err
	}
	if !planned {
		return nil
	}
	fmt.Fprintln(w)
	if len(p.Moves) == 0 && len(p.Unresolved) == 0 {
		_, err := fmt.Fprintf(w, "every host is within --max-load %d: no moves\n", p.MaxLoad)
		return err
	}
	if len(p.Moves) > 0 {
		var moved int64
		rows = rows[:0]
		for _, m := range p.Moves {
			moved += m.Weight
			rows = append(rows, []string{m.Tenant, m.From, m.To, strconv.FormatInt(m.Weight, 10)})
		}
		fmt.Fprintf(w, "%d move(s), weight %d, to bring every host within --max-load %d:\n", len(p.Moves), moved, p.MaxLoad)
		if err := table(w, []string{"TENANT", "FROM", "TO", "WEIGHT"}, rows); err != nil {
			return err
		}
		// The moves as tcsctl move command lines: --to is merged over the
		// tenant's database, so the host is all it needs.
		fmt.Fprintln(w, "\nto make them (one at a time; each is resumable, see tcsctl move --help):")
		for _, m := range p.Moves {
			to, err := json.Marshal(map[string]string{"host": m.To})
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "  tcsctl move %s --to '%s'\n", m.Tenant, to)
		}
	}
	for _, u := range p.Unresolved {
		fmt.Fprintf(w, "cannot bring %s within --max-load %d (weight %d, %d over): %s: %s\n", u.Host, p.MaxLoad, u.Weight, u.Excess, u.Reason, u.Detail)
	}
	return nil
}

func countAdded(hosts []placement.Host) int {
	n := 0
	for _, h := range hosts {
		if h.Added {
			n++
		}
	}
	return n
}
