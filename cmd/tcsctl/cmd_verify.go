package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/internal/jobrun"
	"github.com/tcs-dev/tcs/tcs/drift"
)

// verifyFlags are the flags verify and repair share.
type verifyFlags struct {
	regions  stringList
	output   string
	pageSize int
	rate     float64
	rechecks int
	settle   time.Duration
}

func (v *verifyFlags) register(fs *pflag.FlagSet) {
	fs.Var(&v.regions, "region", "region to check (repeatable; default: every region of --regions)")
	fs.StringVarP(&v.output, "output", "o", "table", "output format: table, json or yaml")
	fs.IntVar(&v.pageSize, "page-size", 1000, "records per page read from the catalog and the regions (at most 1000)")
	fs.Float64Var(&v.rate, "rate", 0, "at most this many records read per second, over the catalog and all regions (0: no limit)")
	fs.IntVar(&v.rechecks, "recheck", 3, "passes that re-check findings before they are reported (0: report the first pass as is)")
	fs.DurationVar(&v.settle, "settle", 500*time.Millisecond, "pause before each re-check pass, for replication to catch up")
}

func (v *verifyFlags) check() error {
	if v.output != "table" && v.output != "json" && v.output != "yaml" {
		return usagef("-o %q: want table, json or yaml", v.output)
	}
	if v.pageSize < 1 || v.pageSize > drift.MaxPageSize {
		return fmt.Errorf("--page-size must be 1 to %d", drift.MaxPageSize)
	}
	if v.rechecks < 0 {
		return fmt.Errorf("--recheck must be ≥ 0")
	}
	return nil
}

// verifier builds the drift engine over the catalog's export and the
// selected regions' replica admin APIs, with a progress bar on a terminal
// (stop it when done).
func (v *verifyFlags) verifier(e *env, c *client) (*drift.Verifier, *jobrun.Progress, error) {
	rs, err := selectRegions(c.regions, v.regions)
	if err != nil {
		return nil, nil, err
	}
	p := jobrun.NewProgress(e.stderr, "verify", -1, "records")
	vr := &drift.Verifier{Truth: exportTruth{c.catalog}, PageSize: v.pageSize, Limiter: jobrun.NewLimiter(v.rate, v.pageSize),
		Rechecks: v.rechecks, Settle: v.settle, Progress: p.Add}
	for _, r := range rs {
		s, err := c.dialer.scanner(r)
		if err != nil {
			return nil, nil, err
		}
		vr.Regions = append(vr.Regions, drift.Region{Name: r.Name, Scanner: s})
	}
	return vr, p, nil
}

// exportTruth is the catalog's export as the drift engine reads it, each
// page retried while the catalog is unavailable.
type exportTruth struct{ c *httpclient.Client }

func (t exportTruth) Export(ctx context.Context, pageToken string, pageSize int) (catalog.ExportPage, error) {
	var page httpclient.ExportPage
	err := retry(ctx, 5, func() (err error) {
		page, err = t.c.Export(ctx, pageToken, pageSize)
		return err
	})
	if err != nil {
		return catalog.ExportPage{}, err
	}
	out := catalog.ExportPage{Next: page.NextPageToken, Items: make([]catalog.ExportItem, len(page.Items))}
	for i, it := range page.Items {
		out.Items[i] = catalog.ExportItem{Tenant: it.Tenant, Claims: it.Claims}
	}
	return out, nil
}

func newVerifyCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify [--region R…] [-o table|json|yaml] [--digest] [--metrics-file PATH]",
		Short: "compare every region's replica with the source of truth",
		Long:  "verify reads the source of truth (the catalog's export), then every region's replica, and reports drift per region; exit 1 if any. " + exitCodesHelp,
		Args:  noArgs,
	}
	fs := cmd.Flags()
	var conn connFlags
	var vf verifyFlags
	conn.register(fs, e.getenv)
	vf.register(fs)
	completeOutput(cmd, "table", "json", "yaml")
	useDigest := fs.Bool("digest", false, "first compare bucket digests (the catalog's GET /v1/admin/digests with each region's ReplicaAdmin.Digests), which read no document when nothing drifted; only if a region's digests differ, run the full verify")
	metricsFile := fs.String("metrics-file", "", "also write the result as Prometheus metrics (tcs_verify_findings{region}, tcs_verify_completed, tcs_verify_last_run_timestamp_seconds) to this file, replaced atomically, for the node exporter's textfile collector; a failed run writes tcs_verify_completed 0")
	cmd.RunE = e.action(func(ctx context.Context, _ []string) error {
		return runVerify(ctx, e, conn, vf, *metricsFile, *useDigest)
	})
	return cmd
}

func runVerify(ctx context.Context, e *env, conn connFlags, vf verifyFlags, metricsFile string, useDigest bool) error {
	if err := vf.check(); err != nil {
		return err
	}
	var rep *drift.Report
	var err error
	if useDigest {
		rep, err = digestCheck(ctx, e, conn, vf)
	}
	if rep == nil && err == nil {
		rep, err = verifyRun(ctx, e, conn, vf)
	}
	if metricsFile != "" && ctx.Err() == nil {
		if werr := drift.WriteTextfile(metricsFile, rep, time.Now()); werr != nil {
			return errors.Join(err, fmt.Errorf("--metrics-file: %w", werr))
		}
	}
	if err != nil {
		return err
	}
	switch vf.output {
	case "json":
		err = printJSON(e.stdout, rep)
	case "yaml":
		err = printYAML(e.stdout, rep)
	default:
		writeReport(e.stdout, rep)
	}
	if err != nil {
		return err
	}
	if !rep.Clean {
		return &exitCodeError{code: exitFinding}
	}
	return nil
}

// verifyRun connects and verifies.
func verifyRun(ctx context.Context, e *env, conn connFlags, vf verifyFlags) (*drift.Report, error) {
	c, err := conn.client(e)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	v, p, err := vf.verifier(e, c)
	if err != nil {
		return nil, err
	}
	rep, err := v.Verify(ctx)
	p.Stop()
	if err != nil {
		if ctx.Err() != nil {
			return nil, jobrun.ErrInterrupted
		}
		return nil, err
	}
	return rep, nil
}

// writeReport prints a verify report as a table and a summary line.
func writeReport(w io.Writer, rep *drift.Report) {
	if len(rep.Findings) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REGION\tKIND\tTENANT\tHOSTNAME\tDETAIL")
		for _, f := range rep.Findings {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Region, f.Kind, dash(f.TenantID), dash(f.Hostname), f.Detail)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	scope := fmt.Sprintf("%d region(s) (%s), %d tenant(s), %d hostname(s), %d pass(es)",
		len(rep.Regions), strings.Join(rep.Regions, ", "), rep.Tenants, rep.Hostnames, rep.Passes)
	if rep.Clean {
		fmt.Fprintf(w, "clean: every region agrees with the source of truth; %s\n", scope)
	} else {
		counts := map[string]int{}
		for _, f := range rep.Findings {
			counts[string(f.Kind)]++
		}
		var kinds []string
		for k, n := range counts {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(kinds)
		fmt.Fprintf(w, "drift: %d finding(s) (%s); %s\n", len(rep.Findings), strings.Join(kinds, ", "), scope)
	}
	if len(rep.Unsettled) > 0 {
		fmt.Fprintf(w, "not judged, still changing after every re-check: %s\n", strings.Join(rep.Unsettled, ", "))
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
