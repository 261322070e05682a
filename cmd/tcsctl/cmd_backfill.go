package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/spf13/cobra"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/jobrun"
)

// backfillLine is one tenant of a backfill file.
type backfillLine struct {
	n      int            // line number, from 1
	body   []byte         // the JSON sent to the catalog (without the fields it sets)
	tenant *tenant.Tenant // prepared: normalised and valid
}

// lineError is a rejected line.
// backfillReport is what backfill -o json|yaml prints.
type backfillReport struct {
	DryRun         bool        `json:"dry_run"`
	Written        bool        `json:"written"`
	WouldImport    int         `json:"would_import,omitempty"`
	Created        int         `json:"created"`
	AlreadyPresent int         `json:"already_present"`
	Rejected       []lineError `json:"rejected"`
}

type lineError struct {
	Line   int    `json:"line"`
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason"`
}

// catalogSet are fields of an exported tenant that the catalog sets; a
// backfill drops them, so that an export can be backfilled as it is.
var catalogSet = []string{"version", "updated_at", "updated_by"}

// parseBackfill reads a JSON Lines file of tenant documents (blank lines
// allowed) and checks every line as the catalog would, plus what only the
// whole file shows: an id or a hostname used twice.
func parseBackfill(r io.Reader) ([]backfillLine, []lineError, string, error) {
	var good []backfillLine
	var bad []lineError
	ids := map[string]int{}
	hosts := map[string]int{}
	sum := sha256.New()
	rd := bufio.NewReaderSize(r, 1<<16)
	for n := 1; ; n++ {
		raw, err := rd.ReadBytes('\n')
		if len(raw) == 0 && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF {
			return nil, nil, "", err
		}
		sum.Write(raw)
		line := bytes.TrimSpace(raw)
		if len(line) == 0 {
			continue
		}
		l, reason := checkBackfillLine(line)
		if reason != "" {
			bad = append(bad, lineError{Line: n, ID: l.id(), Reason: reason})
			continue
		}
		l.n = n
		if first, dup := ids[l.tenant.ID]; dup {
			bad = append(bad, lineError{Line: n, ID: l.tenant.ID, Reason: fmt.Sprintf("tenant id also on line %d", first)})
			continue
		}
		clash := ""
		for _, h := range l.tenant.Hostnames {
			if first, dup := hosts[h]; dup {
				clash = fmt.Sprintf("hostname %s also claimed on line %d", h, first)
				break
			}
		}
		if clash != "" {
			bad = append(bad, lineError{Line: n, ID: l.tenant.ID, Reason: clash})
			continue
		}
		ids[l.tenant.ID] = n
		for _, h := range l.tenant.Hostnames {
			hosts[h] = n
		}
		good = append(good, l)
	}
	return good, bad, hex.EncodeToString(sum.Sum(nil)), nil
}

func (l backfillLine) id() string {
	if l.tenant != nil {
		return l.tenant.ID
	}
	return ""
}

func checkBackfillLine(line []byte) (backfillLine, string) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		return backfillLine{}, "not a JSON object: " + err.Error()
	}
	for _, k := range catalogSet {
		delete(obj, k)
	}
	body, _ := json.Marshal(obj)
	var id struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(line, &id)
	l := backfillLine{body: body, tenant: &tenant.Tenant{ID: id.ID}}
	var in struct {
		tenant.Tenant
		Database json.RawMessage `json:"database"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return l, strings.TrimPrefix(err.Error(), "json: ")
	}
	t := in.Tenant
	if len(in.Database) > 0 && string(in.Database) != "null" {
		db, err := tenant.ParseDatabase(in.Database)
		if err != nil {
			return l, "database: " + err.Error()
		}
		t.Database = db
	}
	if t.Status == tenant.StatusDeleted {
		return l, "status DELETED: a tombstone, not a tenant to import"
	}
	if err := tenant.Prepare(&t); err != nil {
		return l, err.Error()
	}
	l.tenant = &t
	return l, ""
}

// sameTenant compares two documents, ignoring what the catalog sets.
func sameTenant(a, b *tenant.Tenant) bool {
	strip := func(t *tenant.Tenant) []byte {
		c := t.Clone()
		c.Version, c.UpdatedAt, c.UpdatedBy = 0, time.Time{}, ""
		raw, _ := json.Marshal(c)
		return raw
	}
	return bytes.Equal(strip(a), strip(b))
}

// backfiller writes the lines of a backfill.
type backfiller struct {
	cat   *httpclient.Client
	abort bool
	// beforeWrite, if set, runs before each create (tests use it to race
	// another writer after the checks).
	beforeWrite func(l backfillLine)

	output string // -o: text, json or yaml

	mu       sync.Mutex
	created  []*tenant.Tenant
	present  int
	rejected []lineError
}

func (b *backfiller) reject(l backfillLine, reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rejected = append(b.rejected, lineError{Line: l.n, ID: l.tenant.ID, Reason: reason})
}

// preflight checks the lines against the catalog before anything is
// written: an id that exists with another document, or a hostname another
// tenant holds, is a rejected line.
func (b *backfiller) preflight(ctx context.Context, l backfillLine) error {
	cur, err := b.cat.Get(ctx, l.tenant.ID)
	switch {
	case err == nil && !sameTenant(cur, l.tenant):
		b.reject(l, fmt.Sprintf("tenant %s already exists (version %d) with another document", l.tenant.ID, cur.Version))
		return nil
	case err == nil:
		return nil // already imported: written as "already present"
	case !httpclient.IsNotFound(err):
		return fmt.Errorf("line %d: checking tenant %s: %w", l.n, l.tenant.ID, err)
	}
	for _, h := range l.tenant.Hostnames {
		owner, err := b.cat.LookupHostname(ctx, h)
		switch {
		case err == nil:
			b.reject(l, fmt.Sprintf("hostname %s is held by tenant %s", h, owner.ID))
			return nil
		case !httpclient.IsNotFound(err):
			return fmt.Errorf("line %d: checking hostname %s: %w", l.n, h, err)
		}
	}
	return nil
}

// write creates one tenant. An existing tenant with the same document
// counts as present (a resumed or repeated backfill); anything else the
// catalog refuses is a rejected line — or, in abort mode, the end of the
// run.
func (b *backfiller) write(ctx context.Context, l backfillLine) error {
	if b.beforeWrite != nil {
		b.beforeWrite(l)
	}
	var created *tenant.Tenant
	err := retry(ctx, 5, func() (err error) {
		created, err = b.cat.Create(ctx, l.body)
		return err
	})
	if httpclient.IsAlreadyExists(err) {
		cur, gerr := b.cat.Get(ctx, l.tenant.ID)
		if gerr == nil && sameTenant(cur, l.tenant) {
			b.mu.Lock()
			b.present++
			b.mu.Unlock()
			return nil
		}
	}
	if err != nil {
		var ae *httpclient.Error
		if !errors.As(err, &ae) || ae.Status >= 500 {
			return fmt.Errorf("line %d: tenant %s: %w", l.n, l.tenant.ID, err)
		}
		b.reject(l, err.Error())
		if b.abort {
			return fmt.Errorf("line %d: tenant %s: %w", l.n, l.tenant.ID, err)
		}
		return nil
	}
	b.mu.Lock()
	b.created = append(b.created, created)
	b.mu.Unlock()
	return nil
}

// rollback deletes what this run created, so that an aborted backfill
// leaves nothing half-written.
func (b *backfiller) rollback(ctx context.Context) []string {
	var failed []string
	for _, t := range b.created {
		err := retry(ctx, 5, func() error { return b.cat.Delete(ctx, t.ID, t.Version) })
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", t.ID, err))
		}
	}
	return failed
}

const backfillBatch = 100

func newBackfillCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backfill --from FILE.jsonl [--on-error abort|skip] [--dry-run] [-o text|json|yaml] [--yes]",
		Short: "import tenants from a JSON Lines file",
		Long:  "backfill imports tenants from JSON Lines, one tenant document per line, checking every line first. It asks for a confirmation on a terminal and needs --yes otherwise (not with --dry-run; always with --from -, since stdin is the data). " + exitCodesHelp,
		Args:  noArgs,
	}
	fs := cmd.Flags()
	var conn connFlags
	var job jobFlags
	conn.register(fs, e.getenv)
	job.register(fs, e.getenv, "tenants")
	from := fs.String("from", "", "JSON Lines file of tenant documents, one per line (- for stdin); an export's output works as is")
	onError := fs.String("on-error", "abort", "bad lines: abort (check everything first, write nothing if any line is bad) or skip (write the good ones)")
	dryRun := fs.Bool("dry-run", false, "check every line, against the catalog too, and write nothing")
	out := addOutput(fs, "text", "json", "yaml")
	out.complete(cmd)
	var yes bool
	confirmFlag(fs, &yes)
	cmd.RunE = e.action(func(ctx context.Context, _ []string) error {
		if err := out.check(); err != nil {
			return err
		}
		if *from == "" {
			return usagef("--from is required")
		}
		if *onError != "skip" && *onError != "abort" {
			return usagef("--on-error %q: want skip or abort", *onError)
		}
		if !*dryRun {
			if err := e.confirm(yes, "backfill writes every tenant of "+*from, *from == "-"); err != nil {
				return err
			}
		}
		var rd io.Reader = e.stdin
		if *from != "-" {
			f, err := os.Open(*from)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			defer f.Close()
			rd = f
		}
		lines, bad, digest, err := parseBackfill(rd)
		if err != nil {
			return fmt.Errorf("--from %s: %w", *from, err)
		}
		c, err := conn.client(e)
		if err != nil {
			return err
		}
		defer c.Close()
		b := &backfiller{cat: c.catalog, abort: *onError == "abort", rejected: bad, output: out.format}
		return b.run(ctx, e, job, jobrun.WorkKey("backfill", conn.catalogURL, *onError, digest), lines, *dryRun)
	})
	return cmd
}

// run checks (abort mode, dry run) and writes lines; b.rejected holds the
// lines parseBackfill rejected.
func (b *backfiller) run(ctx context.Context, e *env, job jobFlags, key string, lines []backfillLine, dryRun bool) error {
	nbad := len(b.rejected)
	report := func(written bool) {
		sort.Slice(b.rejected, func(i, j int) bool { return b.rejected[i].Line < b.rejected[j].Line })
		if b.output == "json" || b.output == "yaml" {
			rep := backfillReport{DryRun: dryRun, Written: written, Created: len(b.created), AlreadyPresent: b.present, Rejected: b.rejected}
			if rep.Rejected == nil {
				rep.Rejected = []lineError{}
			}
			if dryRun {
				rep.WouldImport = len(lines) - len(b.rejected) + nbad
			}
			(&outputFlag{format: b.output}).print(e.stdout, rep, nil)
			return
		}
		for _, r := range b.rejected {
			id := ""
			if r.ID != "" {
				id = " (tenant " + r.ID + ")"
			}
			fmt.Fprintf(e.stdout, "line %d%s: %s\n", r.Line, id, r.Reason)
		}
		switch {
		case !written && dryRun:
			fmt.Fprintf(e.stdout, "dry run, nothing written: %d line(s) would be imported, %d rejected\n", len(lines)-len(b.rejected)+nbad, len(b.rejected))
		case !written:
			fmt.Fprintf(e.stdout, "nothing written: %d line(s) rejected (--on-error abort)\n", len(b.rejected))
		default:
			fmt.Fprintf(e.stdout, "created %d tenant(s), %d already present, %d line(s) rejected\n", len(b.created), b.present, len(b.rejected))
		}
	}
	if b.abort && nbad > 0 {
		report(false)
		return &exitCodeError{code: exitFinding}
	}

	var ckpt *jobrun.Checkpoint
	var err error
	if !dryRun {
		if ckpt, err = openCheckpoint(job, "backfill", key); err != nil {
			return err
		}
	}
	start := 0
	if ckpt.Resuming() {
		if start, err = strconv.Atoi(ckpt.Token()); err != nil || start < 0 || start > len(lines) {
			return fmt.Errorf("checkpoint %s: bad position %q", ckpt.Path(), ckpt.Token())
		}
		fmt.Fprintf(e.stderr, "tcsctl backfill: resuming from checkpoint %s (%d tenant(s) done)\n", ckpt.Path(), start)
	}
	todo := lines[start:]

	// Abort mode and dry runs check the catalog first: an existing id or a
	// taken hostname rejects the file before anything is written.
	if b.abort || dryRun {
		rn := &jobrun.Runner{Workers: job.workers, Limiter: jobrun.NewLimiter(job.rate, backfillBatch), Progress: jobrun.NewProgress(e.stderr, "backfill check", int64(len(todo)), "tenants")}
		err := rn.Run(ctx, func(ctx context.Context, emit func(jobrun.Batch) bool) error {
			for i := 0; i < len(todo); i += backfillBatch {
				part := todo[i:min(i+backfillBatch, len(todo))]
				if !emit(jobrun.Batch{Items: len(part), Do: func(ctx context.Context) error {
					for _, l := range part {
						if err := b.preflight(ctx, l); err != nil {
							return err
						}
					}
					return nil
				}}) {
					return nil
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if dryRun || len(b.rejected) > 0 {
			report(false)
			if len(b.rejected) > 0 {
				return &exitCodeError{code: exitFinding}
			}
			return nil
		}
	}

	rn := &jobrun.Runner{Workers: job.workers, Limiter: jobrun.NewLimiter(job.rate, backfillBatch), Progress: jobrun.NewProgress(e.stderr, "backfill", int64(len(todo)), "tenants"), Checkpoint: ckpt}
	err = rn.Run(ctx, func(ctx context.Context, emit func(jobrun.Batch) bool) error {
		for i := 0; i < len(todo); i += backfillBatch {
			end := min(i+backfillBatch, len(todo))
			part := todo[i:end]
			if !emit(jobrun.Batch{Items: len(part), Resume: strconv.Itoa(start + end), Do: func(ctx context.Context) error {
				for _, l := range part {
					if err := b.write(ctx, l); err != nil {
						return err
					}
				}
				return nil
			}}) {
				return nil
			}
		}
		return nil
	})
	if err != nil && b.abort && !errors.Is(err, jobrun.ErrInterrupted) {
		failed := b.rollback(context.WithoutCancel(ctx))
		report(false)
		_ = ckpt.Remove()
		if len(failed) > 0 {
			return fmt.Errorf("%w; rolling back failed for %s", err, strings.Join(failed, "; "))
		}
		return fmt.Errorf("%w; the %d tenant(s) this run created were deleted again", err, len(b.created))
	}
	report(true)
	if err != nil {
		return err
	}
	if len(b.rejected) > 0 {
		return &exitCodeError{code: exitFinding}
	}
	return nil
}
