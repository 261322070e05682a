package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/spf13/cobra"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/jobrun"
)

func newResyncCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "resync (--all | --tenant ID… | --file IDS) [--region R…] [--dry-run] [-o text|json|yaml] [--yes]",
		Short: "re-emit tenants through the stream so regions re-apply them",
		Long:  "resync re-emits the current state of tenants through the outbox and the stream; replicas apply it even at an equal version but never roll a newer one back. --all and --file may resync many tenants, so they ask for a confirmation on a terminal and need --yes otherwise (not with --dry-run). " + exitCodesHelp,
		Args:  noArgs,
	}
	fs := cmd.Flags()
	var conn connFlags
	var job jobFlags
	conn.register(fs, e.getenv)
	job.register(fs, e.getenv, "tenants")
	all := fs.Bool("all", false, "resync every tenant of the catalog, tombstones included")
	var ids, regionsWanted stringList
	fs.Var(&ids, "tenant", "tenant id to resync (repeatable, or comma-separated)")
	file := fs.String("file", "", "file of tenant ids, one per line (# comments; - for stdin)")
	fs.Var(&regionsWanted, "region", "region to resync (repeatable; default: every region)")
	batchSize := fs.Int("batch", catalog.MaxResyncTenants, "tenants per resync request (at most 1000)")
	dryRun := fs.Bool("dry-run", false, "print which tenants would be resynced (and which the catalog does not know) and resync nothing")
	out := addOutput(fs, "text", "json", "yaml")
	out.complete(cmd)
	var yes bool
	confirmFlag(fs, &yes)
	cmd.RunE = e.action(func(ctx context.Context, _ []string) error {
		if err := out.check(); err != nil {
			return err
		}
		modes := 0
		for _, set := range []bool{*all, len(ids) > 0, *file != ""} {
			if set {
				modes++
			}
		}
		if modes != 1 {
			return usagef("give exactly one of --all, --tenant or --file")
		}
		if *batchSize < 1 || *batchSize > catalog.MaxResyncTenants {
			return usagef("--batch must be 1 to %d", catalog.MaxResyncTenants)
		}
		if !*dryRun && (*all || *file != "") {
			what := "resync --all re-emits every tenant of the catalog"
			if *file != "" {
				what = "resync re-emits every tenant listed in " + *file
			}
			if err := e.confirm(yes, what, *file == "-"); err != nil {
				return err
			}
		}
		c, err := conn.client(e)
		if err != nil {
			return err
		}
		defer c.Close()
		rs, err := selectRegions(c.regions, regionsWanted)
		if err != nil {
			return err
		}
		var targets []string // nil: every region
		if len(regionsWanted) > 0 {
			targets = regionNames(rs)
		}
		if *file != "" {
			if ids, err = readIDs(e, *file); err != nil {
				return err
			}
		}
		for _, id := range ids {
			if err := tenant.ValidateID(id); err != nil {
				return fmt.Errorf("tenant %q: %v", id, err)
			}
		}
		where := "every region"
		if targets != nil {
			where = strings.Join(targets, ", ")
		}
		if *dryRun {
			return resyncDryRun(ctx, e, c.catalog, *all, ids, where, resyncReport{DryRun: true, Regions: targets}, out)
		}
		r := &resyncer{cat: c.catalog, regions: targets, batch: *batchSize}
		if job.rate > 0 && float64(r.batch) > job.rate {
			r.batch = max(1, int(job.rate)) // keep batches within a second's worth
		}
		st, err := r.run(ctx, e, conn.catalogURL, job, *all, ids)
		if st.resynced > 0 || err == nil {
			rep := resyncReport{Regions: targets, Resynced: st.resynced, NotFound: st.notFound}
			perr := out.print(e.stdout, rep, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "resynced %d tenant(s) to %s\n", st.resynced, where)
				return err
			})
			if err == nil {
				err = perr
			}
		}
		if err != nil {
			return err
		}
		if len(st.notFound) > 0 {
			return finding("%d tenant(s) not found in the catalog: %s", len(st.notFound), strings.Join(st.notFound, ", "))
		}
		return nil
	})
	return cmd
}

// resyncReport is what resync -o json|yaml prints: the tenants resynced
// (with --dry-run: that would be), the ids the catalog does not know.
type resyncReport struct {
	DryRun   bool     `json:"dry_run"`
	Regions  []string `json:"regions,omitempty"` // none: every region
	Resynced int64    `json:"resynced"`
	Tenants  []string `json:"tenants,omitempty"` // --dry-run with --tenant or --file
	NotFound []string `json:"not_found,omitempty"`
}

// resyncDryRun reports what a resync would re-emit, reading the catalog
// only (the id pages of its export, tombstones included, as a real run
// sees them): with --all the number of tenants, otherwise each id and
// whether the catalog knows it (an unknown id is a finding, as in a real
// run).
func resyncDryRun(ctx context.Context, e *env, cat *httpclient.Client, all bool, ids []string, where string, rep resyncReport, out *outputFlag) error {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = false
	}
	n, token := 0, ""
	for {
		page, err := cat.ExportIDs(ctx, token, catalog.MaxResyncTenants)
		if err != nil {
			return fmt.Errorf("reading the catalog%s: %w", afterPage(token), err)
		}
		n += len(page.IDs)
		for _, id := range page.IDs {
			if _, ok := want[id]; ok {
				want[id] = true
			}
		}
		if page.NextPageToken == "" {
			break
		}
		token = page.NextPageToken
	}
	text := out.format == "text"
	if all {
		rep.Resynced = int64(n)
		return out.print(e.stdout, rep, func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "dry run: would resync %d tenant(s) to %s\n", n, where)
			return err
		})
	}
	var missing []string
	found := 0
	for _, id := range ids {
		if want[id] {
			found++
			rep.Tenants = append(rep.Tenants, id)
			if text {
				fmt.Fprintf(e.stdout, "would resync %s\n", id)
			}
		} else {
			if text {
				fmt.Fprintf(e.stdout, "not found    %s\n", id)
			}
			missing = append(missing, id)
		}
	}
	rep.Resynced, rep.NotFound = int64(found), missing
	err := out.print(e.stdout, rep, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "dry run: would resync %d tenant(s) to %s\n", found, where)
		return err
	})
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return finding("%d tenant(s) not found in the catalog: %s", len(missing), strings.Join(missing, ", "))
	}
	return nil
}

// readIDs reads tenant ids, one per line, ignoring blank lines and #
// comments; "-" reads stdin.
func readIDs(e *env, path string) ([]string, error) {
	var rd io.Reader = e.stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("--file: %w", err)
		}
		defer f.Close()
		rd = f
	}
	var ids []string
	var bad []string
	sc := bufio.NewScanner(rd)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := tenant.ValidateID(line); err != nil {
			bad = append(bad, fmt.Sprintf("%s:%d: %q: %v", path, n, line, err))
			continue
		}
		ids = append(ids, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--file %s: %w", path, err)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("--file has %d invalid line(s):\n  %s", len(bad), strings.Join(bad, "\n  "))
	}
	return ids, nil
}

// resyncer re-emits tenants through the catalog's resync API.
type resyncer struct {
	cat     *httpclient.Client
	regions []string
	batch   int
}

type resyncStats struct {
	mu       sync.Mutex
	resynced int64
	notFound []string
}

func (r *resyncer) run(ctx context.Context, e *env, catalogURL string, job jobFlags, all bool, ids []string) (*resyncStats, error) {
	regions := append([]string(nil), r.regions...)
	sort.Strings(regions)
	key := jobrun.WorkKey("resync", catalogURL, strings.Join(regions, ","), strconv.FormatBool(all), strings.Join(ids, "\n"))
	ckpt, err := openCheckpoint(job, "resync", key)
	if err != nil {
		return &resyncStats{}, err
	}
	if ckpt.Resuming() {
		fmt.Fprintf(e.stderr, "tcsctl resync: resuming from checkpoint %s (%d tenant(s) done)\n", ckpt.Path(), ckpt.Done())
	}
	st := &resyncStats{}
	total := int64(-1)
	if !all {
		total = int64(len(ids)) - ckpt.Done()
	}
	rn := &jobrun.Runner{Workers: job.workers, Limiter: jobrun.NewLimiter(job.rate, r.batch), Progress: jobrun.NewProgress(e.stderr, "resync", total, "tenants"), Checkpoint: ckpt}
	send := func(items []catalog.ResyncRequest) func(context.Context) error {
		return func(ctx context.Context) error { return r.send(ctx, items, st) }
	}
	if all {
		err = rn.Run(ctx, func(ctx context.Context, emit func(jobrun.Batch) bool) error {
			return r.produceAll(ctx, emit, ckpt.Token(), st)
		})
	} else {
		start := 0
		if tok := ckpt.Token(); tok != "" {
			if start, err = strconv.Atoi(tok); err != nil || start < 0 || start > len(ids) {
				return st, fmt.Errorf("checkpoint %s: bad position %q", ckpt.Path(), tok)
			}
		}
		err = rn.Run(ctx, func(ctx context.Context, emit func(jobrun.Batch) bool) error {
			for i := start; i < len(ids); i += r.batch {
				end := min(i+r.batch, len(ids))
				items := make([]catalog.ResyncRequest, 0, end-i)
				for _, id := range ids[i:end] {
					items = append(items, catalog.ResyncRequest{ID: id})
				}
				if !emit(jobrun.Batch{Items: len(items), Resume: strconv.Itoa(end), Do: send(items)}) {
					return nil
				}
			}
			return nil
		})
	}
	return st, err
}

// produceAll resyncs every tenant after the page token from, a page per
// request, server side (POST /v1/admin/resync with "all": true): one round
// trip per page and no export. Each page is done when its request returns,
// so the batch it emits only records it (progress, rate, checkpoint: its
// resume token is the next page's). A request is never cut off by Ctrl-C;
// none starts after it. A catalog too old to resync "all" gets the pages
// of an export resynced by id instead.
func (r *resyncer) produceAll(ctx context.Context, emit func(jobrun.Batch) bool, from string, st *resyncStats) error {
	token := from
	for first := true; ctx.Err() == nil; first = false {
		var (
			n    int
			next string
		)
		err := retry(ctx, 5, func() (err error) {
			n, next, err = r.cat.ResyncAll(context.WithoutCancel(ctx), token, r.batch, r.regions)
			return err
		})
		if err != nil {
			if first && httpclient.IsResyncAllUnsupported(err) {
				return r.produceExported(ctx, emit, token, st)
			}
			return fmt.Errorf("resyncing the catalog%s: %w", afterPage(token), err)
		}
		st.mu.Lock()
		st.resynced += int64(n)
		st.mu.Unlock()
		if !emit(jobrun.Batch{Items: n, Resume: next, Do: func(context.Context) error { return nil }}) || next == "" {
			return nil
		}
		token = next
	}
	return nil
}

// produceExported reads the ids of every tenant after the page token from
// from the catalog's export, a page at a time, and emits a resync of each
// page.
func (r *resyncer) produceExported(ctx context.Context, emit func(jobrun.Batch) bool, from string, st *resyncStats) error {
	token := from
	for {
		var page httpclient.IDPage
		err := retry(ctx, 5, func() (err error) {
			page, err = r.cat.ExportIDs(ctx, token, r.batch)
			return err
		})
		if err != nil {
			return fmt.Errorf("reading the catalog%s: %w", afterPage(token), err)
		}
		if len(page.IDs) > 0 {
			items := make([]catalog.ResyncRequest, len(page.IDs))
			for i, id := range page.IDs {
				items[i] = catalog.ResyncRequest{ID: id}
			}
			do := func(ctx context.Context) error { return r.send(ctx, items, st) }
			if !emit(jobrun.Batch{Items: len(items), Resume: page.NextPageToken, Do: do}) {
				return nil
			}
		}
		if page.NextPageToken == "" {
			return nil
		}
		token = page.NextPageToken
	}
}

// send resyncs one batch, retrying while the catalog is unavailable.
func (r *resyncer) send(ctx context.Context, items []catalog.ResyncRequest, st *resyncStats) error {
	var res catalog.ResyncResult
	err := retry(ctx, 5, func() (err error) {
		res, err = r.cat.Resync(ctx, items, r.regions)
		return err
	})
	if err != nil {
		return resyncError(items, err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.resynced += int64(len(res.Resynced))
	st.notFound = append(st.notFound, res.NotFound...)
	return nil
}

var tenantIndex = regexp.MustCompile(`^tenants\[(\d+)\]`)

// resyncError names the tenants a rejected resync request was about: the
// API names fields by position ("tenants[3].id"); people need the id.
func resyncError(items []catalog.ResyncRequest, err error) error {
	var ae *httpclient.Error
	if errors.As(err, &ae) && len(ae.Fields) > 0 {
		var parts []string
		for _, f := range ae.Fields {
			name := f.Field
			if m := tenantIndex.FindStringSubmatch(f.Field); m != nil {
				if i, _ := strconv.Atoi(m[1]); i < len(items) {
					name = fmt.Sprintf("tenant %q (%s)", items[i].ID, f.Field)
				}
			}
			parts = append(parts, name+": "+f.Reason)
		}
		return fmt.Errorf("resync rejected (%d %s): %s", ae.Status, ae.Detail, strings.Join(parts, "; "))
	}
	return fmt.Errorf("resync of %d tenant(s) %s…%s: %w", len(items), items[0].ID, items[len(items)-1].ID, err)
}
