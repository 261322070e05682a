package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// repairAction is one tenant to resync, to some regions, with the hostnames
// to settle along with it, and why.
type repairAction struct {
	TenantID  string   `json:"tenant_id"`
	Regions   []string `json:"regions"`
	Hostnames []string `json:"hostnames,omitempty"`
	Reasons   []string `json:"reasons"`
}

// unrepairable is a finding resync cannot fix, and why.
type unrepairable struct {
	driftFinding
	Why string `json:"why"`
}

// planRepair turns findings into the resyncs that fix them: a tenant's
// document by resyncing the tenant; a hostname by resyncing the tenant that
// holds it in the source of truth (its claim is re-emitted) or, for an
// orphan, the tenant the region wrongly maps it to, settling the hostname
// (the catalog re-emits its release).
func planRepair(fs []driftFinding) ([]repairAction, []unrepairable) {
	byTenant := map[string]*repairAction{}
	var order []string
	var skipped []unrepairable
	add := func(id, region, hostname, reason string) {
		a, ok := byTenant[id]
		if !ok {
			a = &repairAction{TenantID: id}
			byTenant[id] = a
			order = append(order, id)
		}
		if !slices.Contains(a.Regions, region) {
			a.Regions = append(a.Regions, region)
		}
		if hostname != "" && !slices.Contains(a.Hostnames, hostname) {
			a.Hostnames = append(a.Hostnames, hostname)
		}
		a.Reasons = append(a.Reasons, reason)
	}
	for _, f := range fs {
		reason := f.Region + " " + f.Kind
		if f.Hostname != "" {
			reason += " " + f.Hostname
		}
		switch f.Kind {
		case kindMissingTenant, kindStaleVersion, kindContentMismatch:
			add(f.TenantID, f.Region, "", reason)
		case kindAheadVersion:
			skipped = append(skipped, unrepairable{f, "resync never rolls a version back: the region or the catalog was changed outside the pipeline"})
		case kindUnknownTenant:
			skipped = append(skipped, unrepairable{f, "the source of truth has no such tenant, so there is nothing to resync"})
		case kindUnmappedHostname, kindWrongOwner, kindClaimVersion:
			if f.RegionClaim > f.TruthClaim {
				skipped = append(skipped, unrepairable{f, fmt.Sprintf("the region's claim version %d is above the source of truth's %d; a resync cannot lower it", f.RegionClaim, f.TruthClaim)})
				continue
			}
			add(f.TruthOwner, f.Region, "", reason)
		case kindOrphanedHostname:
			add(f.RegionOwner, f.Region, f.Hostname, reason)
		default:
			skipped = append(skipped, unrepairable{f, "unknown kind of drift"})
		}
	}
	out := make([]repairAction, 0, len(order))
	for _, id := range order {
		a := byTenant[id]
		sort.Strings(a.Regions)
		sort.Strings(a.Hostnames)
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TenantID < out[j].TenantID })
	return out, skipped
}

// repairReport is what repair -o json prints.
type repairReport struct {
	Before       *verifyReport  `json:"before"`
	Actions      []repairAction `json:"actions"`
	Unrepairable []unrepairable `json:"unrepairable,omitempty"`
	NotFound     []string       `json:"not_found,omitempty"`
	DryRun       bool           `json:"dry_run"`
	After        *verifyReport  `json:"after,omitempty"`
}

func runRepair(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "repair", "[--region R…] [--dry-run] [--wait D] [-o table|json]")
	var conn connFlags
	var vf verifyFlags
	conn.register(fs, e.getenv)
	vf.register(fs)
	dryRun := fs.Bool("dry-run", false, "print what would be resynced, and resync nothing")
	wait := fs.Duration("wait", 30*time.Second, "after resyncing, verify again until clean or this long has passed (0: do not)")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := vf.check(); err != nil {
		return err
	}
	c, err := conn.client(e)
	if err != nil {
		return err
	}
	defer c.Close()
	v, err := vf.verifier(e, c)
	if err != nil {
		return err
	}
	interrupted := func(err error) error {
		if ctx.Err() != nil {
			return errInterrupted
		}
		return err
	}
	before, err := v.verify(ctx)
	if err != nil {
		v.progress.stop()
		return interrupted(err)
	}
	actions, skipped := planRepair(before.Findings)
	rep := &repairReport{Before: before, Actions: actions, Unrepairable: skipped, DryRun: *dryRun}
	text := vf.output == "table"
	if text {
		v.progress.stop()
		writeRepairPlan(e.stdout, rep)
	}
	if *dryRun || len(actions) == 0 {
		v.progress.stop()
		return finishRepair(e, rep, text)
	}

	// Batch the resyncs by target regions, at most maxResync per request.
	groups := map[string][]repairAction{}
	var keys []string
	for _, a := range actions {
		k := strings.Join(a.Regions, ",")
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], a)
	}
	sort.Strings(keys)
	resynced := 0
	for _, k := range keys {
		group := groups[k]
		for i := 0; i < len(group); i += maxResync {
			part := group[i:min(i+maxResync, len(group))]
			items := make([]resyncTenant, len(part))
			for j, a := range part {
				items[j] = resyncTenant{ID: a.TenantID, Hostnames: a.Hostnames}
			}
			var res resyncResult
			// Finish a resync already sent even on Ctrl-C: it is one request.
			err := retry(context.WithoutCancel(ctx), 5, func() (err error) {
				res, err = c.catalog.Resync(context.WithoutCancel(ctx), items, strings.Split(k, ","))
				return err
			})
			if err != nil {
				return resyncError(items, err)
			}
			resynced += len(res.Resynced)
			rep.NotFound = append(rep.NotFound, res.NotFound...)
			if ctx.Err() != nil {
				return errInterrupted
			}
		}
	}
	if text {
		fmt.Fprintf(e.stdout, "resynced %d tenant(s)\n", resynced)
		if len(rep.NotFound) > 0 {
			fmt.Fprintf(e.stdout, "not in the source of truth any more (not resynced): %s\n", strings.Join(rep.NotFound, ", "))
		}
	}
	if *wait > 0 {
		deadline := time.Now().Add(*wait)
		for {
			if err := sleep(ctx, v.settle); err != nil {
				return interrupted(err)
			}
			after, err := v.verify(ctx)
			if err != nil {
				v.progress.stop()
				return interrupted(err)
			}
			rep.After = after
			if after.Clean || time.Now().After(deadline) {
				break
			}
		}
		v.progress.stop()
		if text {
			fmt.Fprint(e.stdout, "after repair: ")
			writeReport(e.stdout, rep.After)
		}
	}
	v.progress.stop()
	return finishRepair(e, rep, text)
}

func finishRepair(e *env, rep *repairReport, text bool) error {
	if !text {
		if err := printJSON(e.stdout, rep); err != nil {
			return err
		}
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
