package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/httpclient"
)

// history returns a page of the audit records of chain, newest first.
func history(ctx context.Context, cat *httpclient.Client, chain, pageToken string, pageSize int) (httpclient.HistoryPage, error) {
	p, err := cat.History(ctx, chain, pageToken, pageSize)
	if err != nil {
		return httpclient.HistoryPage{}, fmt.Errorf("history of %s: %w", chainName(chain), err)
	}
	return p, nil
}

// auditChain returns every audit record of chain, oldest first.
func auditChain(ctx context.Context, cat *httpclient.Client, chain string) ([]catalog.AuditRecord, error) {
	var all []catalog.AuditRecord
	token := ""
	for {
		var p httpclient.HistoryPage
		err := retry(ctx, 5, func() (err error) {
			p, err = history(ctx, cat, chain, token, catalog.MaxPageSize)
			return err
		})
		if err != nil {
			return nil, err
		}
		all = append(all, p.Records...)
		if p.NextPageToken == "" {
			slices.Reverse(all)
			return all, nil
		}
		token = p.NextPageToken
	}
}

func chainName(chain string) string {
	if chain == catalog.AdminAuditID {
		return "the resync records (" + catalog.AdminAuditID + ")"
	}
	return "tenant " + chain
}

func runAudit(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "verify" {
		return runAuditVerify(ctx, e, args[1:])
	}
	if len(args) > 0 && args[0] == "list" {
		args = args[1:]
	}
	fs := newFlagSet(e, "audit", "[list] (--tenant ID | --resync) [--limit N]  |  tcsctl audit verify (--tenant ID… | --resync | --all)")
	var conn connFlags
	conn.register(fs, e.getenv)
	id := fs.String("tenant", "", "list this tenant's audit records")
	resync := fs.Bool("resync", false, "list the records of resync and resync-all")
	limit := fs.Int("limit", 0, "at most this many records, newest first (0: all)")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	if (*id == "") == !*resync {
		return fmt.Errorf("give --tenant ID or --resync")
	}
	if *limit < 0 {
		return fmt.Errorf("--limit must not be negative")
	}
	chain := *id
	if *resync {
		chain = catalog.AdminAuditID
	}
	c, err := conn.client(e)
	if err != nil {
		return err
	}
	defer c.Close()
	// Records are printed newest first, one JSON object a line, exactly as
	// the catalog served them.
	token, n := "", 0
	for {
		size := catalog.MaxPageSize
		if *limit > 0 {
			size = min(size, *limit-n)
		}
		p, err := history(ctx, c.catalog, chain, token, size)
		if err != nil {
			return err
		}
		for _, r := range p.Records {
			line, err := json.Marshal(r)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s\n", line)
			n++
		}
		if p.NextPageToken == "" || (*limit > 0 && n >= *limit) {
			return nil
		}
		token = p.NextPageToken
	}
}

func runAuditVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "audit verify", "(--tenant ID… | --resync | --all) [--json]")
	var conn connFlags
	conn.register(fs, e.getenv)
	var ids stringList
	fs.Var(&ids, "tenant", "verify this tenant's audit chain (repeatable, or comma-separated)")
	resync := fs.Bool("resync", false, "verify the chain of resync and resync-all records")
	all := fs.Bool("all", false, "verify every tenant's chain (tombstones included) and the resync chain")
	asJSON := fs.Bool("json", false, "print one JSON report per chain instead of text")
	workers := fs.Int("workers", 8, "chains verified at once")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	switch {
	case *all && (len(ids) > 0 || *resync):
		return fmt.Errorf("--all verifies every chain: give it alone")
	case !*all && len(ids) == 0 && !*resync:
		return fmt.Errorf("give --tenant ID, --resync or --all")
	case *workers < 1:
		return fmt.Errorf("--workers must be at least 1")
	}
	c, err := conn.client(e)
	if err != nil {
		return err
	}
	defer c.Close()

	v := &auditVerifier{e: e, cat: c.catalog, asJSON: *asJSON}
	if *resync || *all {
		if err := v.verify(ctx, catalog.AdminAuditID, 0); err != nil {
			return err
		}
	}
	for _, id := range ids {
		if err := v.verify(ctx, id, -1); err != nil {
			return err
		}
	}
	if *all {
		token := ""
		for {
			var page httpclient.ExportPage
			err := retry(ctx, 5, func() (err error) {
				page, err = c.catalog.Export(ctx, token, catalog.MaxExportPageSize)
				return err
			})
			if err != nil {
				return fmt.Errorf("reading the catalog after page token %q: %w", token, err)
			}
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(*workers)
			for _, it := range page.Items {
				g.Go(func() error { return v.verify(gctx, it.Tenant.ID, it.Tenant.Version) })
			}
			if err := g.Wait(); err != nil {
				return err
			}
			if page.NextPageToken == "" {
				break
			}
			token = page.NextPageToken
		}
	}
	if !v.asJSON {
		fmt.Fprintf(e.stdout, "verified %d chain(s), %d record(s) (%d written before chaining, not protected): %d problem(s)\n",
			v.chains, v.records, v.unchained, v.problems)
	}
	if v.problems > 0 {
		return finding("%d problem(s) in %d chain(s): audit records were altered, inserted or deleted", v.problems, v.broken)
	}
	return nil
}

// auditVerifier verifies chains and reports them as it goes.
type auditVerifier struct {
	e      *env
	cat    *httpclient.Client
	asJSON bool

	mu                                           sync.Mutex
	chains, records, unchained, problems, broken int
}

// verify reads and verifies one chain. latest is the tenant's version as
// the caller read it (0: none, the resync chain; -1: unknown, read here).
// It is read after the records, and read again if a write landed in
// between, so that a concurrent write is not reported as an inserted
// record.
func (v *auditVerifier) verify(ctx context.Context, chain string, latest int64) error {
	recs, err := auditChain(ctx, v.cat, chain)
	if err != nil {
		if httpclient.IsNotFound(err) && chain != catalog.AdminAuditID {
			return fmt.Errorf("tenant %s not found", chain)
		}
		return err
	}
	var extra []catalog.ChainProblem
	newest := int64(0)
	if len(recs) > 0 {
		newest = recs[len(recs)-1].Version
	}
	if latest < 0 || (latest > 0 && newest > latest) {
		var deleted bool
		if latest, deleted, err = v.tenantVersion(ctx, chain); err != nil {
			return err
		}
		if deleted {
			// A tombstone's version is not served: its newest record must
			// be the delete.
			switch {
			case len(recs) == 0:
				extra = append(extra, catalog.ChainProblem{Version: 1, Problem: "no audit records"})
			case recs[len(recs)-1].Action != catalog.ActionDelete:
				extra = append(extra, catalog.ChainProblem{Version: newest + 1, Problem: fmt.Sprintf("the tenant is deleted but its newest record (version %d, action %s) is not its delete: the delete record is missing", newest, recs[len(recs)-1].Action)})
			}
			latest = 0
		}
	}
	rep := catalog.VerifyChain(chain, recs, latest)
	rep.Problems = append(rep.Problems, extra...)

	v.mu.Lock()
	defer v.mu.Unlock()
	v.chains++
	v.records += rep.Records
	v.unchained += rep.Unchained
	v.problems += len(rep.Problems)
	if len(rep.Problems) > 0 {
		v.broken++
	}
	if v.asJSON {
		line, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		fmt.Fprintf(v.e.stdout, "%s\n", line)
		return nil
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(v.e.stdout, "%s: version %d: %s\n", chainName(chain), p.Version, p.Problem)
	}
	return nil
}

// tenantVersion returns the current version of tenant id, or deleted when
// the catalog has no live tenant by that id.
func (v *auditVerifier) tenantVersion(ctx context.Context, id string) (version int64, deleted bool, err error) {
	err = retry(ctx, 5, func() (err error) {
		version, err = v.cat.Version(ctx, id)
		return err
	})
	if httpclient.IsNotFound(err) {
		return 0, true, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("reading tenant %s: %w", id, err)
	}
	return version, false, nil
}
