package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/catalog/move"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

const moveLong = `move repoints a tenant at another database with a safe cut-over, as a resumable workflow whose
state is kept in the tenant's own document (its "migration" object; docs/moves.md):

  1. PREPARED  the tenant is flagged read-only (migration.read_only; it stays ACTIVE): compute
               nodes must stop writing to its database. move waits until every region, tcs node
               and acknowledging client cache serves that version (the barrier of tcsctl wait).
  2. copy      with --copy-cmd, move runs it (sh -c) with both databases in its environment:
               TCS_MOVE_TENANT, and TCS_MOVE_FROM_* and TCS_MOVE_TO_* for ENGINE, HOST, PORT, NAME,
               REGION and SECRET_REF (a reference, never a secret). Without it, move prints what to
               copy and stops (exit 1); copy, then run tcsctl move TENANT --copied. COPIED is written.
  3. SWITCHED  once the barrier holds again, the database pointer moves to the new database and the
               read-only flag is cleared, in one write.
  4.           the barrier again: every node serves the new pointer.
  5. COMPLETE  the old database may be retired.

--to is a JSON object merged over the tenant's current database: {"host":"db-2.internal"} keeps
the engine, port, name, region and secret_ref. Every barrier wait is bounded by --max-lag: while
any region has not caught up within it, move stops at its step (exit 1, naming who lags) and does
not switch. Each step is one audited write (tcsctl audit --tenant TENANT); running the same
command again — after an interruption, a kill, a lag or the copy — resumes from the stored step
(TENANT alone resumes too). The catalog refuses steps out of order and, while a move is in
progress, changes of the database and deletes (409 move_conflict).

  move status TENANT    where the move stands and who has not caught up
  move cancel TENANT    end it where it stands (the database stays old before the switch, new after)
  move reverse TENANT   undo it: before the switch it ends at the old database; after it, it starts
                        a move back (read-only again), which tcsctl move TENANT then drives
  Both wait for the barrier after their write, bounded by --max-lag, as the steps above do.

A tenant named status, cancel, reverse or run is moved with tcsctl move run NAME. `

func newMoveCmd(e *env) *cobra.Command {
	cmd := moveRunCmd(e, "move")
	cmd.Use = "move TENANT_ID [--to JSON] [--copy-cmd CMD | --copied] [--max-lag 2m]"
	cmd.Short = "move a tenant to another database: flag read-only, wait, copy, switch, wait, complete (resumable)"
	cmd.Long = moveLong + exitCodesHelp
	cmd.Example = `  tcsctl move acme --to '{"host":"db-2.internal"}' --copy-cmd 'pg_dump -h "$TCS_MOVE_FROM_HOST" "$TCS_MOVE_FROM_NAME" | psql -h "$TCS_MOVE_TO_HOST" "$TCS_MOVE_TO_NAME"'
  tcsctl move acme --to '{"host":"db-2.internal","name":"acme2"}'   # stops for the copy
  tcsctl move acme --copied                                         # after copying by hand
  tcsctl move status acme`
	cmd.AddCommand(moveRunCmd(e, "run"), newMoveStatusCmd(e), newMoveEndCmd(e, "cancel"), newMoveEndCmd(e, "reverse"))
	return cmd
}

// moveRunCmd is `move TENANT` (and `move run TENANT`).
func moveRunCmd(e *env, name string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   name + " TENANT_ID [--to JSON] [--copy-cmd CMD | --copied] [--max-lag 2m]",
		Short: "start or resume a tenant's move (as tcsctl move TENANT does)",
		Long:  moveLong + exitCodesHelp,
		Args:  exactArgs(1),
	}
	fs := cmd.Flags()
	var conn connFlags
	conn.register(fs, e.getenv)
	to := fs.String("to", "", `the database to move to, a JSON object merged over the current one, such as '{"host":"db-2.internal","name":"acme"}' (required to start a move; when resuming it must name the same target)`)
	copyCmd := fs.String("copy-cmd", "", "a shell command that copies the tenant's data, run (sh -c) once every node has seen the read-only flag, with TCS_MOVE_TENANT and TCS_MOVE_{FROM,TO}_{ENGINE,HOST,PORT,NAME,REGION,SECRET_REF} in its environment; exit 0 means copied")
	copied := fs.Bool("copied", false, "the copy is done (by hand, after move stopped for it): record COPIED and go on")
	cmd.ValidArgsFunction = completeTenantIDs(e, &conn)
	maxLag := fs.Duration("max-lag", move.DefaultMaxLag, "bound on each wait for every region, node and acknowledging client cache to reach a step; past it the move stops at its step, naming who lags")
	cmd.RunE = e.action(func(ctx context.Context, pos []string) error {
		if *copyCmd != "" && *copied {
			return usagef("--copy-cmd and --copied exclude each other: --copied says the copy was done by hand")
		}
		if *maxLag <= 0 {
			return usagef("--max-lag %v: want a positive duration", *maxLag)
		}
		var target json.RawMessage
		if *to != "" {
			target = json.RawMessage(*to)
		}
		c, err := conn.client(e)
		if err != nil {
			return err
		}
		defer c.Close()
		m := &move.Mover{Catalog: boundedWaits{c.catalog, c.timeout}, MaxLag: *maxLag, Copied: *copied, Log: e.stdout}
		if *copyCmd != "" {
			m.Copy = shellCopy(*copyCmd, e.stderr)
		}
		t, err := m.Run(ctx, pos[0], target)
		if err != nil {
			return moveError("move "+pos[0], err)
		}
		_, err = fmt.Fprintf(e.stdout, "tenant %s is on %s (move %s at version %d)\n", t.ID, move.DatabaseName(*t.Database), t.Migration.Step, t.Version)
		return err
	})
	return cmd
}

func newMoveEndCmd(e *env, verb string) *cobra.Command {
	short := map[string]string{
		"cancel":  "end a tenant's move where it stands: the database stays old before the switch, new after it",
		"reverse": "undo a tenant's move: before the switch it ends at the old database; after it, a move back starts",
	}[verb]
	cmd := &cobra.Command{
		Use:   verb + " TENANT_ID [--max-lag 2m]",
		Short: short,
		Long: short + ". One audited write, conditioned on the version read; then, as after every step of a move, " +
			"a wait until every region, node and acknowledging client cache serves it, bounded by --max-lag: past it " +
			"the write stands and " + verb + " stops naming who lags (exit 1). See tcsctl move --help. " + exitCodesHelp,
		Args: exactArgs(1),
	}
	fs := cmd.Flags()
	var conn connFlags
	conn.register(fs, e.getenv)
	maxLag := fs.Duration("max-lag", move.DefaultMaxLag, "bound on the wait for every region, node and acknowledging client cache to reach the "+verb+"; past it "+verb+" stops (the write stands), naming who lags")
	cmd.ValidArgsFunction = completeTenantIDs(e, &conn)
	cmd.RunE = e.action(func(ctx context.Context, pos []string) error {
		if *maxLag <= 0 {
			return usagef("--max-lag %v: want a positive duration", *maxLag)
		}
		c, err := conn.client(e)
		if err != nil {
			return err
		}
		defer c.Close()
		m := &move.Mover{Catalog: boundedWaits{c.catalog, c.timeout}, MaxLag: *maxLag, Log: e.stdout}
		end := m.Cancel
		if verb == "reverse" {
			end = m.Reverse
		}
		t, err := end(ctx, pos[0])
		if t != nil && errors.Is(err, context.Canceled) {
			// The write stands; only the wait was interrupted.
			return &exitCodeError{code: exitInterrupted, msg: fmt.Sprintf("interrupted while waiting for version %d to reach everywhere; the %s is written (step %s): wait for it with: tcsctl wait %s --version %d",
				t.Version, verb, t.Migration.Step, t.ID, t.Version)}
		}
		if err != nil {
			return moveError("move "+verb+" "+pos[0], err)
		}
		if t.Moving() {
			_, err = fmt.Fprintf(e.stdout, "tenant %s is moving back to %s (read-only again); drive it with: tcsctl move %s\n", t.ID, move.DatabaseName(t.Migration.To), t.ID)
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "tenant %s: move %s; it stays on %s, writable (version %d)\n", t.ID, t.Migration.Step, move.DatabaseName(*t.Database), t.Version)
		return err
	})
	return cmd
}

func newMoveStatusCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status TENANT_ID [-o text|json|yaml]",
		Short: "where a tenant's move stands, and who has not reached its current version",
		Long: "move status prints the tenant's move (step, from, to, who started it and when, read-only) and, while " +
			"it is in progress, who has not reached the tenant's current version (as tcsctl wait, asked once), and " +
			"what to run next. " + exitCodesHelp,
		Args: exactArgs(1),
	}
	fs := cmd.Flags()
	var conn connFlags
	conn.register(fs, e.getenv)
	out := addOutput(fs, "text", "json", "yaml")
	out.complete(cmd)
	cmd.ValidArgsFunction = completeTenantIDs(e, &conn)
	cmd.RunE = e.action(func(ctx context.Context, pos []string) error {
		if err := out.check(); err != nil {
			return err
		}
		c, err := conn.client(e)
		if err != nil {
			return err
		}
		defer c.Close()
		r, err := move.Status(ctx, c.catalog, pos[0])
		if err != nil {
			return moveError("move status "+pos[0], err)
		}
		return out.print(e.stdout, r, func(w io.Writer) error { return printMoveStatus(w, r) })
	})
	return cmd
}

func printMoveStatus(w io.Writer, r move.Report) error {
	mg := r.Migration
	if mg == nil {
		_, err := fmt.Fprintf(w, "tenant %s (version %d): %s\n", r.Tenant, r.Version, r.Next)
		return err
	}
	started := ""
	if !mg.Started.IsZero() {
		started = mg.Started.UTC().Format(time.RFC3339)
	}
	rows := [][]string{
		{"tenant", r.Tenant},
		{"version", fmt.Sprint(r.Version)},
		{"step", string(mg.Step)},
		{"read-only", fmt.Sprint(mg.ReadOnly)},
		{"from", move.DatabaseName(mg.From)},
		{"to", move.DatabaseName(mg.To)},
		{"database", move.DatabaseName(derefDatabase(r.Database))},
		{"started", started + " by " + mg.By},
	}
	switch {
	case r.PropagationError != "":
		rows = append(rows, []string{"propagation", "unknown: " + r.PropagationError})
	case r.Propagation != nil && r.Propagation.Done:
		rows = append(rows, []string{"propagation", fmt.Sprintf("version %d has reached every region, node and acknowledging client cache", r.Version)})
	case r.Propagation != nil:
		rows = append(rows, []string{"lagging", strings.Join(r.Lagging(), "\n")})
	}
	rows = append(rows, []string{"next", r.Next})
	for _, row := range rows {
		lines := strings.Split(row[1], "\n")
		if _, err := fmt.Fprintf(w, "%-12s %s\n", row[0]+":", lines[0]); err != nil {
			return err
		}
		for _, l := range lines[1:] {
			fmt.Fprintf(w, "%-12s %s\n", "", l)
		}
	}
	return nil
}

func derefDatabase(d *tenant.Database) tenant.Database {
	if d == nil {
		return tenant.Database{}
	}
	return *d
}

// moveError maps a move's error to tcsctl's exit codes: the workflow
// stopping at a step (the copy, a lag, another shell's cancel) is a finding
// (1); an interruption 130; input the move refused is a usage error.
func moveError(what string, err error) error {
	var (
		awaiting *move.AwaitingCopyError
		lag      *move.LagError
		ended    *move.EndedError
	)
	switch {
	case errors.As(err, &awaiting), errors.As(err, &lag), errors.As(err, &ended):
		return finding("%s", err)
	case errors.Is(err, context.Canceled):
		return &exitCodeError{code: exitInterrupted, msg: "interrupted; the move stays at its stored step: run the same command again to resume it"}
	case tenant.ErrorCode(err) == tenant.Invalid && !isAPIError(err):
		return usagef("%w", err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func isAPIError(err error) bool {
	var e *httpclient.Error
	return errors.As(err, &e)
}

// shellCopy runs command with sh -c as a move's copy step, with the job's
// databases in its environment and its output on w.
func shellCopy(command string, w io.Writer) func(context.Context, move.CopyJob) error {
	return func(ctx context.Context, job move.CopyJob) error {
		c := exec.CommandContext(ctx, "sh", "-c", command)
		c.Env = append(os.Environ(), job.Env()...)
		c.Stdout, c.Stderr = w, w
		// An interrupted copy kills sh; a child it started may hold the
		// output open: stop waiting for it after a moment.
		c.WaitDelay = 2 * time.Second
		if err := c.Run(); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("--copy-cmd: %w", err)
		}
		return nil
	}
}

// boundedWaits is the catalog with each propagation long-poll ending
// within --timeout (the HTTP client's bound on a request), however long
// the move's --max-lag lets the whole wait run.
type boundedWaits struct {
	*httpclient.Client
	timeout time.Duration
}

func (b boundedWaits) WaitPropagation(ctx context.Context, id string, version int64) (httpclient.Propagation, error) {
	for {
		chunk := b.timeout * 9 / 10
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < chunk {
			return b.Client.WaitPropagation(ctx, id, version)
		}
		cctx, cancel := context.WithTimeout(ctx, chunk)
		p, err := b.Client.WaitPropagation(cctx, id, version)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			if err != nil && ctx.Err() != nil {
				err = ctx.Err()
			}
			return p, err
		}
	}
}
