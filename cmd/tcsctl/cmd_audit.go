package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"

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

func newAuditCmd(e *env) *cobra.Command {
	cmd := auditListCmd(e, "audit")
	cmd.Use = "audit [list] (--tenant ID | --resync) [--limit N] [-o jsonl|json|yaml|table]"
	cmd.Short = "list audit records, or verify their hash chains (audit verify)"
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown command %q: want list or verify%s", args[0], suggest(cmd, args[0]))
		}
		return nil
	}
	cmd.AddCommand(auditListCmd(e, "list"), newAuditVerifyCmd(e))
	return cmd
}

// auditListCmd is `audit list` (and `audit` alone).
func auditListCmd(e *env, name string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   name + " (--tenant ID | --resync) [--limit N] [-o jsonl|json|yaml|table]",
		Short: "list a tenant's audit records, or those of resync, newest first",
		Long:  "audit list prints a tenant's audit records (--tenant) or those of resync and resync-all (--resync), newest first; -o jsonl (the default) prints one JSON object a line exactly as the catalog serves them.",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	var conn connFlags
	conn.register(fs, e.getenv)
	id := fs.String("tenant", "", "list this tenant's audit records")
	resync := fs.Bool("resync", false, "list the records of resync and resync-all")
	limit := fs.Int("limit", 0, "at most this many records, newest first (0: all)")
	out := addOutput(fs, "jsonl", "json", "yaml", "table")
	out.complete(cmd)
	cmd.RunE = e.action(func(ctx context.Context, _ []string) error {
		return runAuditList(ctx, e, &conn, *id, *resync, *limit, out)
	})
	return cmd
}

func runAuditList(ctx context.Context, e *env, conn *connFlags, id string, resync bool, limit int, out *outputFlag) error {
	if err := out.check(); err != nil {
		return err
	}
	if (id == "") == !resync {
		return usagef("give --tenant ID or --resync")
	}
	if limit < 0 {
		return usagef("--limit must not be negative")
	}
	chain := id
	if resync {
		chain = catalog.AdminAuditID
	}
	c, err := conn.client(e)
	if err != nil {
		return err
	}
	defer c.Close()
	// Records are printed newest first; -o jsonl prints one JSON object a
	// line, exactly as the catalog served them, as they come.
	var all []catalog.AuditRecord
	token, n := "", 0
	for {
		size := catalog.MaxPageSize
		if limit > 0 {
			size = min(size, limit-n)
		}
		p, err := history(ctx, c.catalog, chain, token, size)
		if err != nil {
			return err
		}
		for _, r := range p.Records {
			n++
			if out.format != "jsonl" {
				all = append(all, r)
				continue
			}
			line, err := json.Marshal(r)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s\n", line)
		}
		if p.NextPageToken == "" || (limit > 0 && n >= limit) {
			break
		}
		token = p.NextPageToken
	}
	if out.format == "jsonl" {
		return nil
	}
	if all == nil {
		all = []catalog.AuditRecord{}
	}
	return out.print(e.stdout, all, func(w io.Writer) error { return auditTable(w, all) })
}

// auditTable writes audit records as a table.
func auditTable(w io.Writer, recs []catalog.AuditRecord) error {
	rows := make([][]string, 0, len(recs))
	for _, r := range recs {
		status := ""
		if r.After != nil {
			status = string(r.After.Status)
		}
		rows = append(rows, []string{r.TenantID, strconv.FormatInt(r.Version, 10), string(r.Action), r.Actor, r.At.UTC().Format(time.RFC3339), status})
	}
	return table(w, []string{"TENANT", "VERSION", "ACTION", "ACTOR", "AT", "STATUS"}, rows)
}

func newAuditVerifyCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify (--tenant ID… | --resync | --all) [-o text|json|yaml]",
		Short: "verify audit hash chains through the catalog API (exit 1 on a problem)",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	var conn connFlags
	conn.register(fs, e.getenv)
	var ids stringList
	fs.Var(&ids, "tenant", "verify this tenant's audit chain (repeatable, or comma-separated)")
	resync := fs.Bool("resync", false, "verify the chain of resync and resync-all records")
	all := fs.Bool("all", false, "verify every tenant's chain (tombstones included) and the resync chain")
	asJSON := fs.Bool("json", false, "print one JSON report per chain instead of text (as -o json)")
	workers := fs.Int("workers", 8, "chains verified at once")
	out := addOutput(fs, "text", "json", "yaml")
	out.complete(cmd)
	cmd.RunE = e.action(func(ctx context.Context, _ []string) error {
		if err := out.check(); err != nil {
			return err
		}
		if *asJSON {
			out.format = "json"
		}
		switch {
		case *all && (len(ids) > 0 || *resync):
			return usagef("--all verifies every chain: give it alone")
		case !*all && len(ids) == 0 && !*resync:
			return usagef("give --tenant ID, --resync or --all")
		case *workers < 1:
			return usagef("--workers must be at least 1")
		}
		c, err := conn.client(e)
		if err != nil {
			return err
		}
		defer c.Close()

		v := &auditVerifier{e: e, cat: c.catalog, format: out.format}
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
					return fmt.Errorf("reading the catalog%s: %w", afterPage(token), err)
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
		if v.format == "text" {
			fmt.Fprintf(e.stdout, "verified %d chain(s), %d record(s) (%d written before chaining, not protected): %d problem(s)\n",
				v.chains, v.records, v.unchained, v.problems)
		}
		if v.problems > 0 {
			return finding("%d problem(s) in %d chain(s): audit records were altered, inserted or deleted", v.problems, v.broken)
		}
		return nil
	})
	return cmd
}

// auditVerifier verifies chains and reports them as it goes.
type auditVerifier struct {
	e      *env
	cat    *httpclient.Client
	format string // text, json (a line per chain) or yaml (a document per chain)

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
	switch v.format {
	case "json":
		line, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		fmt.Fprintf(v.e.stdout, "%s\n", line)
		return nil
	case "yaml":
		fmt.Fprintln(v.e.stdout, "---")
		return printYAML(v.e.stdout, rep)
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
