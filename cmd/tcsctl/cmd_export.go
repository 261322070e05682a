package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/spf13/cobra"
	"io"
	"os"
	"strconv"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/internal/jobrun"
	"github.com/tcs-dev/tcs/internal/safefile"
)

// exportLine is one line of an export: the tenant's JSON as the catalog
// sent it, compacted (so that fields this build does not know survive).
func exportLine(it httpclient.ExportItem) ([]byte, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, it.Raw); err != nil {
		return nil, fmt.Errorf("tenant %s: %w", it.Tenant.ID, err)
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

func newExportCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export [--to FILE.jsonl [--force]] [--include-deleted]",
		Short: "write every tenant to a JSON Lines file",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	var conn connFlags
	var job jobFlags
	conn.register(fs, e.getenv)
	job.register(fs, e.getenv, "tenants")
	to := fs.String("to", "", "write to this file (default: stdout), mode 0600; written as FILE.partial (created new, never through a symbolic link) and renamed when complete; an existing FILE is an error")
	force := fs.Bool("force", false, "with --to: replace an existing FILE (atomically, when the export is complete) and a FILE.partial no checkpoint resumes")
	includeDeleted := fs.Bool("include-deleted", false, "include tombstones (status DELETED)")
	pageSize := fs.Int("page-size", catalog.MaxExportPageSize, "tenants per catalog request (at most 1000)")
	cmd.RunE = e.action(func(ctx context.Context, _ []string) error {
		if *pageSize < 1 || *pageSize > catalog.MaxExportPageSize {
			return fmt.Errorf("--page-size must be 1 to %d", catalog.MaxExportPageSize)
		}
		c, err := conn.client(e)
		if err != nil {
			return err
		}
		defer c.Close()

		var out io.Writer = e.stdout
		var ckpt *jobrun.Checkpoint
		var file *os.File
		partial := *to + ".partial"
		if *to != "" {
			key := jobrun.WorkKey("export", conn.catalogURL, *to, strconv.FormatBool(*includeDeleted))
			if ckpt, err = openCheckpoint(job, "export", key); err != nil {
				return err
			}
			if !*force {
				if _, err := os.Lstat(*to); err == nil {
					return fmt.Errorf("--to: %s exists already: pass --force to replace it", *to)
				}
			}
			if ckpt.Resuming() {
				file, err = safefile.OpenExisting(partial)
				if os.IsNotExist(err) {
					err = fmt.Errorf("%w: checkpoint %s resumes an export whose partial file is gone; pass --restart", err, ckpt.Path())
				}
			} else {
				if *force {
					if err := os.Remove(partial); err != nil && !os.IsNotExist(err) {
						return fmt.Errorf("--to: %w", err)
					}
				}
				file, err = safefile.Create(partial)
				if err != nil && !*force {
					err = fmt.Errorf("%w (left by an interrupted export without a checkpoint? --force replaces it)", err)
				}
			}
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			defer file.Close()
			if ckpt.Resuming() {
				// Drop whatever was written after the last checkpoint.
				if err := file.Truncate(ckpt.Offset()); err != nil {
					return fmt.Errorf("--to: %w", err)
				}
				if _, err := file.Seek(ckpt.Offset(), io.SeekStart); err != nil {
					return fmt.Errorf("--to: %w", err)
				}
				fmt.Fprintf(e.stderr, "tcsctl export: resuming from checkpoint %s (%d tenant(s) done)\n", ckpt.Path(), ckpt.Done())
			}
			out = file
		}
		w := bufio.NewWriterSize(out, 1<<16)
		var offset int64
		if ckpt != nil {
			offset = ckpt.Offset()
		}
		var written int64
		before := ckpt.Done()
		// Pages are written in order, so export runs on one worker: the
		// producer reads the next page while the worker writes this one.
		rn := &jobrun.Runner{Workers: 1, Limiter: jobrun.NewLimiter(job.rate, *pageSize), Progress: jobrun.NewProgress(e.stderr, "export", -1, "tenants"), Checkpoint: ckpt}
		err = rn.Run(ctx, func(ctx context.Context, emit func(jobrun.Batch) bool) error {
			token := ckpt.Token()
			for {
				var page httpclient.ExportPage
				err := retry(ctx, 5, func() (err error) {
					page, err = c.catalog.Export(ctx, token, *pageSize)
					return err
				})
				if err != nil {
					return fmt.Errorf("reading the catalog%s: %w", afterPage(token), err)
				}
				var buf bytes.Buffer
				n := 0
				for _, it := range page.Items {
					if it.Tenant.Deleted() && !*includeDeleted {
						continue
					}
					line, err := exportLine(it)
					if err != nil {
						return err
					}
					buf.Write(line)
					n++
				}
				end := offset + int64(buf.Len())
				offset = end
				if !emit(jobrun.Batch{Items: n, Resume: page.NextPageToken, Offset: end, Do: func(context.Context) error {
					if _, err := w.Write(buf.Bytes()); err != nil {
						return err
					}
					written += int64(n)
					// The checkpoint records this offset: it must be on disk.
					return w.Flush()
				}}) {
					return nil
				}
				if page.NextPageToken == "" {
					return nil
				}
				token = page.NextPageToken
			}
		})
		if ferr := w.Flush(); err == nil && ferr != nil {
			err = ferr
		}
		if err != nil {
			return err
		}
		if file != nil {
			if err := file.Sync(); err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			if err := file.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
				return fmt.Errorf("--to: %w", err)
			}
			if err := safefile.Rename(partial, *to, *force); err != nil {
				return fmt.Errorf("--to: %w (the export is complete in %s)", err, partial)
			}
			fmt.Fprintf(e.stderr, "exported %d tenant(s) to %s\n", before+written, *to)
		}
		return nil
	})
	return cmd
}
