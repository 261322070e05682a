package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/catalog/tenantexpr"
	"github.com/tcs-dev/tcs/internal/jobrun"
)

// settable are the fields --set may change; the rest (id, version,
// updated_at, updated_by) belong to the catalog.
var settable = map[string]bool{"hostnames": true, "status": true, "products": true, "database": true, "region": true, "labels": true}

// assignment is one --set FIELD=VALUE.
type assignment struct {
	path  []string
	value any
}

// parseSet parses FIELD=VALUE. VALUE is taken as JSON if it parses as JSON
// (5432, true, null, "quoted", ["a","b"], {"k":"v"}), else as a string:
// --set database.host=db-9 and --set 'labels.n="5432"' both set strings.
// null removes the field (a JSON merge patch's rule).
func parseSet(s string) (assignment, error) {
	field, raw, ok := strings.Cut(s, "=")
	if !ok || field == "" {
		return assignment{}, fmt.Errorf("--set %q: want FIELD=VALUE", s)
	}
	parts := strings.Split(field, ".")
	for _, p := range parts {
		if p == "" {
			return assignment{}, fmt.Errorf("--set %q: bad field path", s)
		}
	}
	if !settable[parts[0]] {
		return assignment{}, fmt.Errorf("--set %q: %s cannot be set (settable: database, hostnames, labels, products, region, status)", s, parts[0])
	}
	if err := tenantexpr.CheckPath(parts); err != nil {
		return assignment{}, fmt.Errorf("--set %q: %v", s, err)
	}
	if parts[0] == "hostnames" && len(parts) > 1 {
		return assignment{}, fmt.Errorf("--set %q: set hostnames as a whole list, such as hostnames='[\"a.example.com\"]'", s)
	}
	var v any
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		v = raw
	}
	return assignment{path: parts, value: v}, nil
}

// buildPatch turns assignments into one JSON merge patch, refusing two that
// overlap (labels=… and labels.tier=…).
func buildPatch(as []assignment) (httpclient.MergePatch, error) {
	patch := httpclient.MergePatch{}
	seen := map[string]string{}
	for _, a := range as {
		full := strings.Join(a.path, ".")
		for i := 1; i <= len(a.path); i++ {
			prefix := strings.Join(a.path[:i], ".")
			if other, ok := seen[prefix]; ok {
				return nil, fmt.Errorf("--set %s and --set %s overlap", other, full)
			}
		}
		for p, other := range seen {
			if strings.HasPrefix(p, full+".") {
				return nil, fmt.Errorf("--set %s and --set %s overlap", other, full)
			}
		}
		seen[full] = full
		m := map[string]any(patch)
		for _, p := range a.path[:len(a.path)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[a.path[len(a.path)-1]] = a.value
	}
	return patch, nil
}

// applyPatch returns a copy of doc with an RFC 7396 merge patch applied.
func applyPatch(doc any, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	out := map[string]any{}
	if d, ok := doc.(map[string]any); ok {
		for k, v := range d {
			out[k] = v
		}
	}
	for k, v := range p {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = applyPatch(out[k], v)
	}
	return out
}

// change is one leaf that differs between two documents.
type change struct {
	Path   string `json:"path"`
	Before any    `json:"before"`
	After  any    `json:"after"`
}

// diffDocs lists the leaves that differ, by dotted path, ignoring the
// fields the catalog sets on every write.
func diffDocs(before, after map[string]any) []change {
	var out []change
	var walk func(prefix string, a, b any)
	walk = func(prefix string, a, b any) {
		am, aok := a.(map[string]any)
		bm, bok := b.(map[string]any)
		// A missing object diffs as an empty one: labels.moved, not labels.
		if aok && b == nil || bok && a == nil {
			aok, bok = true, true
		}
		if aok && bok {
			keys := map[string]bool{}
			for k := range am {
				keys[k] = true
			}
			for k := range bm {
				keys[k] = true
			}
			sorted := make([]string, 0, len(keys))
			for k := range keys {
				sorted = append(sorted, k)
			}
			sort.Strings(sorted)
			for _, k := range sorted {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				if prefix == "" && (k == "version" || k == "updated_at" || k == "updated_by") {
					continue
				}
				walk(p, am[k], bm[k])
			}
			return
		}
		if !reflect.DeepEqual(a, b) {
			out = append(out, change{Path: prefix, Before: a, After: b})
		}
	}
	walk("", before, after)
	return out
}

func stringsOf(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// affectedHostnames are the hostnames whose lookups a change alters: every
// hostname the tenant holds before or after it.
func affectedHostnames(before, after map[string]any) []string {
	set := map[string]bool{}
	for _, h := range stringsOf(before["hostnames"]) {
		set[h] = true
	}
	for _, h := range stringsOf(after["hostnames"]) {
		set[h] = true
	}
	out := make([]string, 0, len(set))
	for h := range set {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// transformResult is what happened to one tenant.
type transformResult struct {
	ID          string   `json:"id"`
	Action      string   `json:"action"` // would_change, changed, unchanged, skipped, failed
	FromVersion int64    `json:"from_version,omitempty"`
	ToVersion   int64    `json:"to_version,omitempty"`
	Retries     int      `json:"retries,omitempty"`
	Changes     []change `json:"changes,omitempty"`
	Hostnames   []string `json:"hostnames_affected,omitempty"`
	Reason      string   `json:"reason,omitempty"`
}

// transformer applies a patch to every tenant matching a condition,
// through the catalog with If-Match, re-reading and re-evaluating on a
// version conflict.
type transformer struct {
	cat        *httpclient.Client
	where      *tenantexpr.Expr
	patch      httpclient.MergePatch
	dryRun     bool
	maxRetries int
	// segments is how many listers list the tenants, each its own segment
	// (transformSegments); less than 2 lists with one.
	segments int
	// notes, if set, is told when the catalog cannot list by segment.
	notes io.Writer
	// pageSize is the tenants listed per page (and batch); 0 means
	// transformPageSize.
	pageSize int
	// beforeWrite, if set, runs between reading a tenant and writing it
	// (tests use it to race a concurrent writer deterministically).
	beforeWrite func(id string, attempt int)

	mu      sync.Mutex
	scanned int64
	results []transformResult
}

func (t *transformer) record(r transformResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.results = append(t.results, r)
}

// one handles one tenant, read as doc.
func (t *transformer) one(ctx context.Context, doc map[string]any) {
	id, _ := doc["id"].(string)
	res := transformResult{ID: id}
	for attempt := 0; ; attempt++ {
		version := int64(0)
		if v, ok := doc["version"].(float64); ok {
			version = int64(v)
		}
		ok, err := t.where.Match(doc)
		if err != nil {
			res.Action, res.Reason = "failed", "evaluating --where: "+err.Error()
			break
		}
		if !ok {
			if attempt > 0 {
				res.Action, res.Reason = "skipped", fmt.Sprintf("no longer matches after a concurrent change (version %d)", version)
				t.record(res)
			}
			return
		}
		after := applyPatch(doc, map[string]any(t.patch)).(map[string]any)
		res.FromVersion, res.Changes, res.Hostnames = version, diffDocs(doc, after), affectedHostnames(doc, after)
		if len(res.Changes) == 0 {
			res.Action = "unchanged"
			break
		}
		if t.dryRun {
			res.Action = "would_change"
			break
		}
		if t.beforeWrite != nil {
			t.beforeWrite(id, attempt)
		}
		var updated *tenant.Tenant
		err = retry(ctx, 5, func() (err error) {
			updated, err = t.cat.Patch(ctx, id, version, t.patch)
			return err
		})
		switch {
		case err == nil:
			res.Action, res.ToVersion = "changed", updated.Version
		case httpclient.IsVersionMismatch(err) && attempt < t.maxRetries:
			res.Retries++
			err = retry(ctx, 5, func() (err error) {
				doc, err = t.cat.GetRaw(ctx, id)
				return err
			})
			if httpclient.IsNotFound(err) {
				res.Action, res.Reason = "skipped", "deleted by a concurrent change"
				break
			}
			if err != nil {
				res.Action, res.Reason = "failed", "re-reading after a version conflict: "+err.Error()
				break
			}
			continue
		case httpclient.IsVersionMismatch(err):
			res.Action, res.Reason = "failed", fmt.Sprintf("still conflicting after %d retries: %v", attempt, err)
		case httpclient.IsNotFound(err):
			res.Action, res.Reason = "skipped", "deleted by a concurrent change"
		default:
			res.Action, res.Reason = "failed", err.Error()
		}
		break
	}
	t.record(res)
}

// transformPageSize is the catalog's largest list page.
const transformPageSize = 500

// transformSegments is how many segments transform lists with, one lister
// each, for workers workers: the largest power of two up to workers and
// 64. A power of two up to the DynamoDB store's 64 shards reads only its
// segment's shards (see catalog.SegmentOf); more segments than shards
// would spread the writes no further.
func transformSegments(workers int) int {
	n := 1
	for n*2 <= min(workers, 64) {
		n *= 2
	}
	return n
}

// segmentsToken is the prefix of a transform checkpoint token that lists
// by segment; a token without it is a catalog page token of one lister.
const segmentsToken = "segments:"

// segmentState is where each segment's lister is: the page token of its
// first page not yet done, or done. A checkpoint saves it (as
// segmentsToken + JSON) as of the last batch of the longest run of
// finished batches, so resuming redoes at most the pages in flight.
type segmentState struct {
	Tokens []string `json:"tokens"`
	Done   []bool   `json:"done"`
}

func (st segmentState) encode() string {
	raw, _ := json.Marshal(st)
	return segmentsToken + string(raw)
}

// parseSegmentState reads a checkpoint token; ok is false for a token of
// one lister.
func parseSegmentState(token string) (st segmentState, ok bool, err error) {
	raw, ok := strings.CutPrefix(token, segmentsToken)
	if !ok {
		return st, false, nil
	}
	if err := json.Unmarshal([]byte(raw), &st); err != nil || len(st.Tokens) < 1 || len(st.Tokens) > catalog.MaxSegments || len(st.Done) != len(st.Tokens) {
		return st, false, fmt.Errorf("checkpoint token %.40q… is not a transform's by-segment position; pass --restart", token)
	}
	return st, true, nil
}

// run lists the tenants and hands their pages to rn's workers. With
// t.segments > 1 it lists with one lister per segment, so that the pages in
// flight, and so the writes, fall in different segments (on DynamoDB,
// different outbox shards, whose writes do not serialise on one another);
// a catalog that cannot list by segment is listed with one lister.
func (t *transformer) run(ctx context.Context, rn *jobrun.Runner) error {
	return rn.Run(ctx, func(ctx context.Context, emit func(jobrun.Batch) bool) error {
		token := rn.Checkpoint.Token()
		st, resumed, err := parseSegmentState(token)
		if err != nil {
			return err
		}
		if !resumed {
			if token != "" || t.segments < 2 {
				return t.listOne(ctx, token, emit)
			}
			st = segmentState{Tokens: make([]string, t.segments), Done: make([]bool, t.segments)}
		}
		firsts, err := t.firstPages(ctx, st)
		if errors.Is(err, httpclient.ErrSegmentsUnsupported) && !resumed {
			if t.notes != nil {
				fmt.Fprintf(t.notes, "tcsctl transform: %v; listing with one lister\n", err)
			}
			return t.listOne(ctx, "", emit)
		}
		if err != nil {
			return err
		}
		return t.listSegments(ctx, st, firsts, emit)
	})
}

func (t *transformer) listPageSize() int {
	if t.pageSize > 0 {
		return t.pageSize
	}
	return transformPageSize
}

// batch is the work of one page of tenants.
func (t *transformer) batch(docs []map[string]any, resume string) jobrun.Batch {
	return jobrun.Batch{Items: len(docs), Resume: resume, Do: func(ctx context.Context) error {
		for _, d := range docs {
			t.one(ctx, d)
		}
		t.mu.Lock()
		t.scanned += int64(len(docs))
		t.mu.Unlock()
		return nil
	}}
}

// listOne lists every tenant after page token with one lister.
func (t *transformer) listOne(ctx context.Context, token string, emit func(jobrun.Batch) bool) error {
	for {
		var page httpclient.ListPage
		err := retry(ctx, 5, func() (err error) {
			page, err = t.cat.List(ctx, token, t.listPageSize())
			return err
		})
		if err != nil {
			return fmt.Errorf("listing tenants%s: %w", afterPage(token), err)
		}
		if len(page.Tenants) > 0 && !emit(t.batch(page.Tenants, page.NextPageToken)) {
			return nil
		}
		if page.NextPageToken == "" {
			return nil
		}
		token = page.NextPageToken
	}
}

// listSegment reads segment seg's page after token.
func (t *transformer) listSegment(ctx context.Context, seg, segments int, token string) (httpclient.ListPage, error) {
	var page httpclient.ListPage
	err := retry(ctx, 5, func() (err error) {
		page, err = t.cat.ListSegment(ctx, token, t.listPageSize(), seg, segments)
		return err
	})
	if err != nil {
		return page, fmt.Errorf("listing segment %d of %d%s: %w", seg, segments, afterPage(token), err)
	}
	return page, nil
}

// firstPages reads the next page of every segment not done, at once,
// before any is handed out: a catalog that ignores the segment parameters
// lists its first page for every segment, so a non-empty catalog shows
// some lister a tenant of another segment (ErrSegmentsUnsupported) here,
// before any work was done twice.
func (t *transformer) firstPages(ctx context.Context, st segmentState) ([]httpclient.ListPage, error) {
	n := len(st.Tokens)
	pages := make([]httpclient.ListPage, n)
	g, gctx := errgroup.WithContext(ctx)
	for seg := range n {
		if st.Done[seg] {
			continue
		}
		g.Go(func() (err error) {
			pages[seg], err = t.listSegment(gctx, seg, n, st.Tokens[seg])
			return err
		})
	}
	return pages, g.Wait()
}

// listSegments runs one lister per segment not done, starting from its
// first page. Pages are emitted one at a time, each with the state of
// every segment as of that page (its Resume), so the checkpoint the
// Runner keeps covers exactly the pages emitted up to the last batch of
// its run of finished ones.
func (t *transformer) listSegments(ctx context.Context, st segmentState, firsts []httpclient.ListPage, emit func(jobrun.Batch) bool) error {
	n := len(st.Tokens)
	var (
		mu      sync.Mutex
		stopped bool
	)
	// send emits page of seg and reports whether its lister goes on.
	send := func(seg int, page httpclient.ListPage) bool {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return false
		}
		st.Tokens[seg], st.Done[seg] = page.NextPageToken, page.NextPageToken == ""
		if len(page.Tenants) > 0 && !emit(t.batch(page.Tenants, st.encode())) {
			stopped = true
			return false
		}
		return page.NextPageToken != ""
	}
	g, gctx := errgroup.WithContext(ctx)
	for seg := range n {
		if st.Done[seg] {
			continue
		}
		page := firsts[seg]
		g.Go(func() error {
			for send(seg, page) {
				var err error
				if page, err = t.listSegment(gctx, seg, n, page.NextPageToken); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// transformReport is what transform -o json prints.
type transformReport struct {
	DryRun  bool                  `json:"dry_run"`
	Where   string                `json:"where"`
	Set     httpclient.MergePatch `json:"set"`
	Results []transformResult     `json:"results"`
	Summary map[string]int64      `json:"summary"`
}

func newTransformCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "transform --where EXPR --set FIELD=VALUE… [--dry-run] [-o text|json|yaml] [--yes]",
		Short: "bulk-change tenants matching an expression, with optimistic concurrency",
		Long:  "transform changes every live tenant matching --where through the catalog, as a JSON merge patch with If-Match, re-reading on a version conflict. It asks for a confirmation on a terminal and needs --yes otherwise (not with --dry-run). See the package documentation for the --where language. " + exitCodesHelp,
		Args:  noArgs,
	}
	fs := cmd.Flags()
	var conn connFlags
	var job jobFlags
	conn.register(fs, e.getenv)
	job.register(fs, e.getenv, "tenants")
	where := fs.String("where", "", `condition on tenant fields, e.g. 'database.host == "db-7" && status == "ACTIVE"' (see tcsctl's package documentation)`)
	var sets stringList
	fs.Func("set", "FIELD=VALUE to set on every matching tenant (repeatable; dotted paths such as database.host=db-9; VALUE is JSON or a plain string; null removes)", func(s string) error {
		sets = append(sets, s)
		return nil
	})
	dryRun := fs.Bool("dry-run", false, "print the diff per tenant and the hostnames affected; write nothing")
	maxRetries := fs.Int("retries", 10, "re-reads after a version conflict before a tenant is reported failed")
	out := addOutput(fs, "text", "json", "yaml")
	out.complete(cmd)
	var yes bool
	confirmFlag(fs, &yes)
	cmd.RunE = e.action(func(ctx context.Context, _ []string) error {
		if *where == "" || len(sets) == 0 {
			return usagef("--where and at least one --set are required")
		}
		if err := out.check(); err != nil {
			return err
		}
		cond, err := tenantexpr.Parse(*where)
		if err != nil {
			return fmt.Errorf("--where: %w", err)
		}
		var as []assignment
		for _, s := range sets {
			a, err := parseSet(s)
			if err != nil {
				return err
			}
			as = append(as, a)
		}
		patch, err := buildPatch(as)
		if err != nil {
			return err
		}
		if !*dryRun {
			if err := e.confirm(yes, fmt.Sprintf("transform sets %s on every tenant matching %s", strings.Join(sets, " "), cond), false); err != nil {
				return err
			}
		}
		c, err := conn.client(e)
		if err != nil {
			return err
		}
		defer c.Close()
		t := &transformer{cat: c.catalog, where: cond, patch: patch, dryRun: *dryRun, maxRetries: *maxRetries, segments: transformSegments(job.workers), notes: e.stderr}
		rawPatch, _ := json.Marshal(map[string]any(patch))
		var ckpt *jobrun.Checkpoint
		if !*dryRun {
			key := jobrun.WorkKey("transform", conn.catalogURL, cond.String(), string(rawPatch))
			if ckpt, err = openCheckpoint(job, "transform", key); err != nil {
				return err
			}
			if ckpt.Resuming() {
				fmt.Fprintf(e.stderr, "tcsctl transform: resuming from checkpoint %s (%d tenant(s) done)\n", ckpt.Path(), ckpt.Done())
			}
		}
		rn := &jobrun.Runner{Workers: job.workers, Limiter: jobrun.NewLimiter(job.rate, transformPageSize), Progress: jobrun.NewProgress(e.stderr, "transform", -1, "tenants"), Checkpoint: ckpt}
		runErr := t.run(ctx, rn)
		sort.Slice(t.results, func(i, j int) bool { return t.results[i].ID < t.results[j].ID })
		summary := map[string]int64{"scanned": t.scanned}
		for _, r := range t.results {
			summary[r.Action]++
			summary["retries"] += int64(r.Retries)
		}
		err = out.print(e.stdout, transformReport{DryRun: *dryRun, Where: cond.String(), Set: patch, Results: t.results, Summary: summary}, func(w io.Writer) error {
			writeTransform(w, t.results, summary, *dryRun)
			return nil
		})
		if err != nil {
			return err
		}
		if runErr != nil {
			return runErr
		}
		if summary["failed"] > 0 {
			return finding("%d tenant(s) failed", summary["failed"])
		}
		return nil
	})
	return cmd
}

func writeTransform(w io.Writer, results []transformResult, summary map[string]int64, dryRun bool) {
	for _, r := range results {
		switch r.Action {
		case "would_change", "changed":
			head := fmt.Sprintf("~ %s (version %d)", r.ID, r.FromVersion)
			if r.Action == "changed" {
				head = fmt.Sprintf("changed %s %d → %d", r.ID, r.FromVersion, r.ToVersion)
				if r.Retries > 0 {
					head += fmt.Sprintf(" after %d version conflict(s)", r.Retries)
				}
			}
			fmt.Fprintln(w, head)
			for _, c := range r.Changes {
				fmt.Fprintf(w, "    %s: %s → %s\n", c.Path, jsonText(c.Before), jsonText(c.After))
			}
			fmt.Fprintf(w, "    hostnames affected: %s\n", strings.Join(r.Hostnames, ", "))
		case "unchanged":
			fmt.Fprintf(w, "= %s: already as --set wants\n", r.ID)
		case "skipped":
			fmt.Fprintf(w, "skipped %s: %s\n", r.ID, r.Reason)
		case "failed":
			fmt.Fprintf(w, "FAILED %s: %s\n", r.ID, r.Reason)
		}
	}
	keys := []string{"scanned", "would_change", "changed", "unchanged", "skipped", "failed", "retries"}
	var parts []string
	for _, k := range keys {
		if k == "would_change" && !dryRun || k == "changed" && dryRun {
			continue
		}
		parts = append(parts, k+" "+strconv.FormatInt(summary[k], 10))
	}
	prefix := ""
	if dryRun {
		prefix = "dry run, nothing written: "
	}
	fmt.Fprintf(w, "%s%s\n", prefix, strings.Join(parts, ", "))
}

func jsonText(v any) string {
	if v == nil {
		return "(none)"
	}
	b, _ := json.Marshal(v)
	return string(b)
}
