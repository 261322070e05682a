package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// newTenantCmd is `tcsctl tenant`: the catalog's tenants one at a time,
// over its REST API (catalog/httpclient), as kubectl does for resources.
func newTenantCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "tenant",
		Aliases: []string{"tenants"},
		Short:   "list, get, create, apply, patch, delete tenants and read their history",
		Long: `tenant manages tenants in the catalog, the source of truth, one at a time. Writes carry
the version precondition (If-Match): apply and patch send the version they read (or the one
given), so a concurrent change is refused (412), never overwritten. The catalog's refusal of
a request (invalid document, unknown tenant, version changed, id or hostname taken) is exit 1
with its reason; nothing was changed. ` + exitCodesHelp,
		Args: cobra.ArbitraryArgs,
		RunE: subcommandsOnly,
	}
	cmd.AddCommand(newTenantListCmd(e), newTenantGetCmd(e), newTenantCreateCmd(e), newTenantApplyCmd(e),
		newTenantPatchCmd(e), newTenantDeleteCmd(e), newTenantHistoryCmd(e))
	return cmd
}

// refused turns the catalog's refusal of a request about tenant id (a 4xx
// answer other than authentication and rate limits) into a finding (exit
// 1); anything else stays an error (exit 2).
func refused(op, id string, err error) error {
	switch s := httpclient.Status(err); {
	case s >= 400 && s < 500 && s != http.StatusUnauthorized && s != http.StatusForbidden && s != http.StatusTooManyRequests:
		msg := err.Error()
		var he *httpclient.Error
		if errors.As(err, &he) {
			// Name every field the catalog refused, even where its reason
			// repeats the detail.
			for _, f := range he.Fields {
				if f.Field != "" && !strings.Contains(msg, f.Field+":") {
					msg += "; " + f.String()
				}
			}
		}
		return finding("%s tenant %q: %s", op, id, msg)
	}
	return fmt.Errorf("%s tenant %q: %w", op, id, err)
}

// completeTenantIDs offers the ids of the catalog's first page of tenants.
func completeTenantIDs(e *env, conn *connFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := conn.client(&env{getenv: e.getenv, stdin: e.stdin, stdout: io.Discard, stderr: io.Discard})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer c.Close()
		p, err := c.catalog.List(cmd.Context(), "", catalog.MaxPageSize)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var ids []string
		for _, t := range p.Tenants {
			if id, _ := t["id"].(string); strings.HasPrefix(id, prefix) {
				ids = append(ids, id)
			}
		}
		return ids, cobra.ShellCompDirectiveNoFileComp
	}
}

func newTenantListCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list [--limit N] [-o table|json|yaml]",
		Short: "list live tenants in id order",
		Args:  noArgs,
	}
	var conn connFlags
	conn.register(cmd.Flags(), e.getenv)
	limit := cmd.Flags().Int("limit", 0, "at most this many tenants (0: all)")
	out := addOutput(cmd.Flags(), "table", "json", "yaml")
	out.complete(cmd)
	cmd.RunE = e.action(func(ctx context.Context, _ []string) error {
		if err := out.check(); err != nil {
			return err
		}
		if *limit < 0 {
			return usagef("--limit %d: must not be negative", *limit)
		}
		c, err := conn.client(e)
		if err != nil {
			return err
		}
		defer c.Close()
		docs := []map[string]any{}
		token := ""
		for {
			size := catalog.MaxPageSize
			if *limit > 0 {
				size = min(size, *limit-len(docs))
			}
			var p httpclient.ListPage
			err := retry(ctx, 5, func() (err error) {
				p, err = c.catalog.List(ctx, token, size)
				return err
			})
			if err != nil {
				return fmt.Errorf("listing tenants%s: %w", afterPage(token), err)
			}
			docs = append(docs, p.Tenants...)
			if p.NextPageToken == "" || (*limit > 0 && len(docs) >= *limit) {
				break
			}
			token = p.NextPageToken
		}
		return out.print(e.stdout, docs, func(w io.Writer) error {
			ts := make([]*tenant.Tenant, 0, len(docs))
			for _, d := range docs {
				t, err := tenantOf(d)
				if err != nil {
					return err
				}
				ts = append(ts, t)
			}
			return tenantTable(w, ts)
		})
	})
	return cmd
}

// tenantOf decodes a tenant the API sent as a JSON object.
func tenantOf(doc map[string]any) (*tenant.Tenant, error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var t tenant.Tenant
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("tenant %v: %w", doc["id"], err)
	}
	return &t, nil
}

// tenantTable writes tenants as a table.
func tenantTable(w io.Writer, ts []*tenant.Tenant) error {
	rows := make([][]string, 0, len(ts))
	for _, t := range ts {
		var products []string
		for p := range t.Products {
			products = append(products, p)
		}
		slices.Sort(products)
		updated := ""
		if !t.UpdatedAt.IsZero() {
			updated = t.UpdatedAt.UTC().Format("2006-01-02T15:04:05Z")
		}
		rows = append(rows, []string{t.ID, strconv.FormatInt(t.Version, 10), string(t.Status), t.Region,
			strings.Join(t.Hostnames, ","), strings.Join(products, ","), updated})
	}
	return table(w, []string{"ID", "VERSION", "STATUS", "REGION", "HOSTNAMES", "PRODUCTS", "UPDATED"}, rows)
}

func newTenantGetCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get TENANT_ID [-o table|json|yaml]",
		Short: "read a tenant from the catalog (exit 1 if there is none)",
		Args:  exactArgs(1),
	}
	var conn connFlags
	conn.register(cmd.Flags(), e.getenv)
	out := addOutput(cmd.Flags(), "table", "json", "yaml")
	out.complete(cmd)
	cmd.ValidArgsFunction = completeTenantIDs(e, &conn)
	cmd.RunE = e.action(func(ctx context.Context, args []string) error {
		return runGet(ctx, e, &conn, out, args[0])
	})
	return cmd
}

// readDocument reads a tenant document (or a merge patch) from path ("-":
// stdin), JSON or YAML, and returns it as a JSON object.
func readDocument(e *env, flag, path string) (map[string]any, error) {
	if path == "" {
		return nil, usagef("%s is required: a JSON or YAML file, - for stdin", flag)
	}
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(e.stdin, 1<<20))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, usagef("%s: %v", flag, err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, usagef("%s %s: neither JSON nor YAML: %v", flag, path, err)
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil || doc == nil {
		return nil, usagef("%s %s: want one object (a tenant document), got %s", flag, path, strings.TrimSpace(string(j)))
	}
	return doc, nil
}

// serverFields are the fields the catalog sets; a document may carry them
// (an export or a get does) and they are dropped before writing.
var serverFields = []string{"version", "updated_at", "updated_by"}

// documentVersion takes the version out of doc (and the other fields the
// catalog sets): 0 if it has none.
func documentVersion(doc map[string]any, flag string) (int64, error) {
	var v int64
	if raw, ok := doc["version"]; ok {
		n, isNum := raw.(json.Number)
		i, err := n.Int64()
		if !isNum || err != nil || i < 1 {
			return 0, usagef("%s: version %v: want a positive integer (the version the document was read at)", flag, raw)
		}
		v = i
	}
	for _, f := range serverFields {
		delete(doc, f)
	}
	return v, nil
}

// writeResult prints the outcome of a write: a line ("tenant acme created
// (version 1)") or the tenant as stored.
func writeResult(e *env, out *outputFlag, t *tenant.Tenant, verb string) error {
	return out.print(e.stdout, t, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "tenant %s %s (version %d)\n", t.ID, verb, t.Version)
		return err
	})
}

func newTenantCreateCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create -f FILE [-o text|json|yaml]",
		Short: "create a tenant from a JSON or YAML document (-f - reads stdin); exit 1 if the catalog refuses it",
		Args:  noArgs,
	}
	var conn connFlags
	conn.register(cmd.Flags(), e.getenv)
	file := cmd.Flags().StringP("filename", "f", "", "the tenant document, JSON or YAML (- for stdin); version and updated_* are ignored")
	out := addOutput(cmd.Flags(), "text", "json", "yaml")
	out.complete(cmd)
	cmd.RunE = e.action(func(ctx context.Context, _ []string) error {
		if err := out.check(); err != nil {
			return err
		}
		doc, err := readDocument(e, "-f", *file)
		if err != nil {
			return err
		}
		if _, err := documentVersion(doc, "-f"); err != nil {
			return err
		}
		id, _ := doc["id"].(string)
		c, err := conn.client(e)
		if err != nil {
			return err
		}
		defer c.Close()
		body, _ := json.Marshal(doc)
		rctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		t, err := c.catalog.Create(rctx, body)
		if err != nil {
			return refused("create", id, err)
		}
		return writeResult(e, out, t, "created")
	})
	return cmd
}

func newTenantApplyCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apply -f FILE [-o text|json|yaml]",
		Short: "create a tenant, or replace it, from a JSON or YAML document (-f - reads stdin)",
		Long: `apply makes the catalog hold the document in FILE (JSON or YAML; - for stdin). A tenant that
does not exist is created. One that exists is replaced (PUT) with the version precondition: at
the document's version if it has one (as a get or an export gives it: the edit is refused,
exit 1, if the tenant changed since), else at the version just read. A document equal to the
stored tenant is left alone ("unchanged"). updated_at and updated_by are ignored.`,
		Args: noArgs,
	}
	var conn connFlags
	conn.register(cmd.Flags(), e.getenv)
	file := cmd.Flags().StringP("filename", "f", "", "the tenant document, JSON or YAML (- for stdin)")
	out := addOutput(cmd.Flags(), "text", "json", "yaml")
	out.complete(cmd)
	cmd.RunE = e.action(func(ctx context.Context, _ []string) error {
		if err := out.check(); err != nil {
			return err
		}
		doc, err := readDocument(e, "-f", *file)
		if err != nil {
			return err
		}
		version, err := documentVersion(doc, "-f")
		if err != nil {
			return err
		}
		id, _ := doc["id"].(string)
		if err := tenant.ValidateID(id); err != nil {
			return usagef("-f %s: id %q: %v", *file, id, err)
		}
		c, err := conn.client(e)
		if err != nil {
			return err
		}
		defer c.Close()
		rctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		body, _ := json.Marshal(doc)
		cur, err := c.catalog.GetRaw(rctx, id)
		switch {
		case httpclient.IsNotFound(err) && version > 0:
			return finding("apply tenant %q: the document has version %d but the catalog has no such tenant: remove version to create it", id, version)
		case httpclient.IsNotFound(err):
			t, err := c.catalog.Create(rctx, body)
			if err != nil {
				return refused("apply (create)", id, err)
			}
			return writeResult(e, out, t, "created")
		case err != nil:
			return fmt.Errorf("apply tenant %q: reading it: %w", id, err)
		}
		curVersion, _ := cur["version"].(float64)
		if version == 0 {
			version = int64(curVersion)
		}
		if version == int64(curVersion) && sameDocument(cur, body) {
			t, err := tenantOf(cur)
			if err != nil {
				return err
			}
			return writeResult(e, out, t, "unchanged")
		}
		t, err := c.catalog.Replace(rctx, id, version, body)
		if httpclient.IsVersionMismatch(err) {
			return finding("apply tenant %q: the tenant is at version %d, not %d: it changed since the document was read; read it again (tcsctl tenant get %s -o yaml) and reapply", id, int64(curVersion), version, id)
		}
		if err != nil {
			return refused("apply", id, err)
		}
		return writeResult(e, out, t, "configured")
	})
	return cmd
}

// sameDocument reports whether the stored tenant cur holds the document
// body: both decoded alike, the catalog's own fields left out, an empty
// field the same as a missing one, and a missing status the catalog's
// default (ACTIVE).
func sameDocument(cur map[string]any, body []byte) bool {
	var want map[string]any
	if json.Unmarshal(body, &want) != nil {
		return false
	}
	norm := func(doc map[string]any) map[string]any {
		out := map[string]any{"status": string(tenant.StatusActive)}
		for k, v := range doc {
			switch x := v.(type) {
			case nil:
				continue
			case map[string]any:
				if len(x) == 0 {
					continue
				}
			case []any:
				if len(x) == 0 {
					continue
				}
			}
			out[k] = v
		}
		for _, f := range serverFields {
			delete(out, f)
		}
		return out
	}
	return reflect.DeepEqual(norm(cur), norm(want))
}

func newTenantPatchCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "patch TENANT_ID (--set FIELD=VALUE… | -f PATCH) [--if-version N] [-o text|json|yaml]",
		Short: "change some fields of a tenant (a JSON merge patch), with the version precondition",
		Long: `patch sends a JSON merge patch (RFC 7396) built from --set FIELD=VALUE (as transform's: dotted
paths, VALUE JSON or a plain string, null removes) or read from -f (JSON or YAML; - for stdin),
with If-Match: --if-version N, else the version just read. A tenant that changed in between is
refused (exit 1), never overwritten.`,
		Args: exactArgs(1),
	}
	var conn connFlags
	conn.register(cmd.Flags(), e.getenv)
	var sets stringList
	cmd.Flags().Func("set", "FIELD=VALUE to set (repeatable; dotted paths such as database.host=db-9; VALUE is JSON or a plain string; null removes)", func(s string) error {
		sets = append(sets, s)
		return nil
	})
	file := cmd.Flags().StringP("filename", "f", "", "a JSON merge patch, JSON or YAML (- for stdin), instead of --set")
	ifVersion := cmd.Flags().Int64("if-version", 0, "apply only if the tenant is at this version (default: the version read just before)")
	out := addOutput(cmd.Flags(), "text", "json", "yaml")
	out.complete(cmd)
	cmd.ValidArgsFunction = completeTenantIDs(e, &conn)
	cmd.RunE = e.action(func(ctx context.Context, args []string) error {
		id := args[0]
		if err := out.check(); err != nil {
			return err
		}
		if (len(sets) > 0) == (*file != "") {
			return usagef("give --set FIELD=VALUE… or -f PATCH (one of them)")
		}
		if *ifVersion < 0 {
			return usagef("--if-version %d: want a positive version", *ifVersion)
		}
		var patch httpclient.MergePatch
		if *file != "" {
			doc, err := readDocument(e, "-f", *file)
			if err != nil {
				return err
			}
			patch = doc
		} else {
			var as []assignment
			for _, s := range sets {
				a, err := parseSet(s)
				if err != nil {
					return &usageError{err}
				}
				as = append(as, a)
			}
			p, err := buildPatch(as)
			if err != nil {
				return &usageError{err}
			}
			patch = p
		}
		c, err := conn.client(e)
		if err != nil {
			return err
		}
		defer c.Close()
		rctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		version := *ifVersion
		if version == 0 {
			if version, err = c.catalog.Version(rctx, id); err != nil {
				return refused("patch", id, err)
			}
		}
		t, err := c.catalog.Patch(rctx, id, version, patch)
		if httpclient.IsVersionMismatch(err) {
			return finding("patch tenant %q: it is no longer at version %d: it changed since; read it again", id, version)
		}
		if err != nil {
			return refused("patch", id, err)
		}
		return writeResult(e, out, t, "patched")
	})
	return cmd
}

func newTenantDeleteCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete TENANT_ID [--if-version N]",
		Short: "delete a tenant (it becomes a tombstone; its hostnames are released)",
		Args:  exactArgs(1),
	}
	var conn connFlags
	conn.register(cmd.Flags(), e.getenv)
	ifVersion := cmd.Flags().Int64("if-version", 0, "delete only if the tenant is at this version (default: whatever its version)")
	cmd.ValidArgsFunction = completeTenantIDs(e, &conn)
	cmd.RunE = e.action(func(ctx context.Context, args []string) error {
		id := args[0]
		if *ifVersion < 0 {
			return usagef("--if-version %d: want a positive version", *ifVersion)
		}
		c, err := conn.client(e)
		if err != nil {
			return err
		}
		defer c.Close()
		rctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		err = c.catalog.Delete(rctx, id, *ifVersion)
		if httpclient.IsVersionMismatch(err) {
			return finding("delete tenant %q: it is no longer at version %d: it changed since; nothing was deleted", id, *ifVersion)
		}
		if err != nil {
			return refused("delete", id, err)
		}
		_, err = fmt.Fprintf(e.stdout, "tenant %s deleted\n", id)
		return err
	})
	return cmd
}

func newTenantHistoryCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "history TENANT_ID [--limit N] [-o table|json|yaml|jsonl]",
		Short: "list a tenant's audit records, newest first (as audit list --tenant)",
		Args:  exactArgs(1),
	}
	var conn connFlags
	conn.register(cmd.Flags(), e.getenv)
	limit := cmd.Flags().Int("limit", 0, "at most this many records, newest first (0: all)")
	out := addOutput(cmd.Flags(), "table", "json", "yaml", "jsonl")
	out.complete(cmd)
	cmd.ValidArgsFunction = completeTenantIDs(e, &conn)
	cmd.RunE = e.action(func(ctx context.Context, args []string) error {
		err := runAuditList(ctx, e, &conn, args[0], false, *limit, out)
		if httpclient.IsNotFound(err) {
			return finding("history of tenant %q: %v", args[0], err)
		}
		return err
	})
	return cmd
}
