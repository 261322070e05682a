package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tcs-dev/tcs/catalog/httpclient"
)

func newWaitCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "wait TENANT_ID --version V [--timeout 30s] [-o text|json|yaml]",
		Short: "wait until a tenant's change has reached every region, tcs node and acknowledging client cache",
		Long: "wait asks the catalog (GET /v1/tenants/{id}/propagation, long-polled) until the tenant at --version " +
			"(the version a write returned: its ETag) is served by every live tcs node of every region and acknowledged " +
			"by every Watch client cache that acknowledges, or until --timeout (here the bound on the whole wait) " +
			"runs out. It prints where the change stands: per region the replica version, each node's cached version, " +
			"feed and served state, and the nodes' clients (acknowledged, lagging, not acknowledging: built before " +
			"acknowledgements, they do not hold the wait). Exit 0 when done; 1 when the timeout ran out first, naming " +
			"who has not reached the version. " + exitCodesHelp,
		Example: "  tcsctl wait acme --version 4 --timeout 30s",
		Args:    exactArgs(1),
	}
	fs := cmd.Flags()
	var conn connFlags
	conn.register(fs, e.getenv)
	version := fs.Int64("version", 0, "the version to wait for: what a write returned (its ETag), at least 1 (required)")
	out := addOutput(fs, "text", "json", "yaml")
	out.complete(cmd)
	cmd.RunE = e.action(func(ctx context.Context, pos []string) error {
		return runWait(ctx, e, &conn, out, pos[0], *version)
	})
	return cmd
}

func runWait(ctx context.Context, e *env, conn *connFlags, out *outputFlag, id string, version int64) error {
	if err := out.check(); err != nil {
		return err
	}
	if version < 1 {
		return usagef("--version %d: want the version a write returned (its ETag), at least 1", version)
	}
	c, err := conn.client(e)
	if err != nil {
		return err
	}
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	p, err := c.catalog.WaitPropagation(wctx, id, version)
	timedOut := errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && p.TenantID != ""
	if err != nil && !timedOut {
		return fmt.Errorf("wait for tenant %s at version %d: %w", id, version, err)
	}
	if err := out.print(e.stdout, p, func(w io.Writer) error { return printPropagation(w, p) }); err != nil {
		return err
	}
	if !p.Done {
		return finding("tenant %s has not reached version %d everywhere within %v; not there yet: %s",
			id, version, c.timeout, strings.Join(p.Lagging, "; "))
	}
	return nil
}

// printPropagation writes where a change stands as a table of nodes.
func printPropagation(w io.Writer, p httpclient.Propagation) error {
	var rows [][]string
	for _, r := range p.Regions {
		for _, n := range r.Nodes {
			state := "done"
			switch {
			case n.Error != "":
				state = "error: " + n.Error
			case !n.Done:
				state = "waiting"
			}
			rows = append(rows, []string{r.Region, n.ID, n.Addr, strconv.FormatInt(n.ReplicaVersion, 10), strconv.FormatInt(n.CachedVersion, 10),
				strconv.FormatInt(n.FeedVersion, 10), strconv.FormatBool(n.FeedUp), strconv.FormatBool(n.Served),
				fmt.Sprintf("%d/%d/%d", n.Clients.Acknowledged, n.Clients.Lagging, n.Clients.NotAcking), state})
		}
		for _, d := range r.Dropped {
			rows = append(rows, []string{r.Region, d.ID, d.Addr, "", "", "", "", "", "", "dropped (last heartbeat " + d.LastHeartbeat.UTC().Format("15:04:05") + ")"})
		}
		if r.Problem != "" {
			rows = append(rows, []string{r.Region, "", "", "", "", "", "", "", "", r.Problem})
		}
	}
	if err := table(w, []string{"REGION", "NODE", "ADDR", "REPLICA", "CACHED", "FEED", "FEED_UP", "SERVED", "CLIENTS(ACK/LAG/NOT)", "STATE"}, rows); err != nil {
		return err
	}
	if p.Done {
		_, err := fmt.Fprintf(w, "tenant %s at version %d has reached every region, node and acknowledging client cache\n", p.TenantID, p.Version)
		return err
	}
	_, err := fmt.Fprintf(w, "tenant %s has not reached version %d everywhere yet:\n  %s\n", p.TenantID, p.Version, strings.Join(p.Lagging, "\n  "))
	return err
}
