package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/internal/backoff"
	"github.com/tcs-dev/tcs/internal/jobrun"
	"github.com/tcs-dev/tcs/tcs/drift"
)

// repairReport is what repair -o json prints.
type repairReport struct {
	Before       *drift.Report        `json:"before"`
	Actions      []drift.Action       `json:"actions"`
	Unrepairable []drift.Unrepairable `json:"unrepairable,omitempty"`
	NotFound     []string             `json:"not_found,omitempty"`
	DryRun       bool                 `json:"dry_run"`
	After        *drift.Report        `json:"after,omitempty"`
}

func newRepairCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repair [--region R…] [--dry-run] [--wait D] [-o table|json|yaml] [--yes]",
		Short: "verify, then resync exactly what drifted",
		Long:  "repair runs verify, then resyncs exactly what drifted, to the regions where it drifted, and verifies again until clean or --wait runs out. It may resync many tenants, so it asks for a confirmation on a terminal and needs --yes otherwise (not with --dry-run). " + exitCodesHelp,
		Args:  noArgs,
	}
	fs := cmd.Flags()
	var conn connFlags
	var vf verifyFlags
	conn.register(fs, e.getenv)
	vf.register(fs)
	completeOutput(cmd, "table", "json", "yaml")
	dryRun := fs.Bool("dry-run", false, "print what would be resynced, and resync nothing")
	wait := fs.Duration("wait", 30*time.Second, "after resyncing, verify again until clean or this long has passed (0: do not)")
	var yes bool
	confirmFlag(fs, &yes)
	cmd.RunE = e.action(func(ctx context.Context, _ []string) error {
		return runRepair(ctx, e, conn, vf, *dryRun, *wait, yes)
	})
	return cmd
}

func runRepair(ctx context.Context, e *env, conn connFlags, vf verifyFlags, dryRun bool, wait time.Duration, yes bool) error {
	if err := vf.check(); err != nil {
		return err
	}
	if !dryRun {
		if err := e.confirm(yes, "repair resyncs every tenant that drifted", false); err != nil {
			return err
		}
	}
	c, err := conn.client(e)
	if err != nil {
		return err
	}
	defer c.Close()
	v, p, err := vf.verifier(e, c)
	if err != nil {
		return err
	}
	interrupted := func(err error) error {
		if ctx.Err() != nil {
			return jobrun.ErrInterrupted
		}
		return err
	}
	before, err := v.Verify(ctx)
	if err != nil {
		p.Stop()
		return interrupted(err)
	}
	actions, skipped := drift.PlanRepair(before.Findings)
	rep := &repairReport{Before: before, Actions: actions, Unrepairable: skipped, DryRun: dryRun}
	text := vf.output == "table"
	if text {
		p.Stop()
		writeRepairPlan(e.stdout, rep)
	}
	if dryRun || len(actions) == 0 {
		p.Stop()
		return finishRepair(e, rep, vf.output)
	}

	resynced := 0
	for _, b := range drift.Batches(actions) {
		items := b.Tenants
		var res catalog.ResyncResult
		// Finish a resync already sent even on Ctrl-C: it is one request.
		err := retry(context.WithoutCancel(ctx), 5, func() (err error) {
			res, err = c.catalog.Resync(context.WithoutCancel(ctx), items, b.Regions)
			return err
		})
		if err != nil {
			return resyncError(items, err)
		}
		resynced += len(res.Resynced)
		rep.NotFound = append(rep.NotFound, res.NotFound...)
		if ctx.Err() != nil {
			return jobrun.ErrInterrupted
		}
	}
	if text {
		fmt.Fprintf(e.stdout, "resynced %d tenant(s)\n", resynced)
		if len(rep.NotFound) > 0 {
			fmt.Fprintf(e.stdout, "not in the source of truth any more (not resynced): %s\n", strings.Join(rep.NotFound, ", "))
		}
	}
	if wait > 0 {
		deadline := time.Now().Add(wait)
		for {
			if err := backoff.Sleep(ctx, v.Settle); err != nil {
				return interrupted(err)
			}
			after, err := v.Verify(ctx)
			if err != nil {
				p.Stop()
				return interrupted(err)
			}
			rep.After = after
			if after.Clean || time.Now().After(deadline) {
				break
			}
		}
		p.Stop()
		if text {
			fmt.Fprint(e.stdout, "after repair: ")
			writeReport(e.stdout, rep.After)
		}
	}
	p.Stop()
	return finishRepair(e, rep, vf.output)
}

func finishRepair(e *env, rep *repairReport, output string) error {
	var err error
	switch output {
	case "json":
		err = printJSON(e.stdout, rep)
	case "yaml":
		err = printYAML(e.stdout, rep)
	}
	if err != nil {
		return err
	}
	switch {
	case rep.After != nil && !rep.After.Clean:
		return &exitCodeError{code: exitFinding, msg: "drift remains after repair"}
	case rep.After == nil && (len(rep.Unrepairable) > 0 || len(rep.NotFound) > 0 || (rep.DryRun && len(rep.Actions) > 0)):
		return &exitCodeError{code: exitFinding}
	}
	return nil
}

func writeRepairPlan(w io.Writer, rep *repairReport) {
	writeReport(w, rep.Before)
	if len(rep.Actions) == 0 && len(rep.Unrepairable) == 0 {
		return
	}
	verb := "resync"
	if rep.DryRun {
		verb = "would resync"
	}
	for _, a := range rep.Actions {
		settle := ""
		if len(a.Hostnames) > 0 {
			settle = ", settling " + strings.Join(a.Hostnames, ", ")
		}
		fmt.Fprintf(w, "%s %s to %s%s (%s)\n", verb, a.TenantID, strings.Join(a.Regions, ", "), settle, strings.Join(a.Reasons, "; "))
	}
	for _, u := range rep.Unrepairable {
		subject := u.TenantID
		if u.Hostname != "" {
			subject = u.Hostname
		}
		fmt.Fprintf(w, "cannot repair %s %s %s: %s\n", u.Region, u.Kind, subject, u.Why)
	}
}
