package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/catalog/tenant"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// lookupAnswer is what `lookup` prints.
type lookupAnswer struct {
	Hostname string         `json:"hostname"`
	Region   string         `json:"region"`
	Addr     string         `json:"addr"`
	Stale    bool           `json:"stale"`
	Age      string         `json:"age"`
	Tenant   *tenant.Tenant `json:"tenant"`
}

func newLookupCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lookup HOSTNAME [--region R | --addr HOST:PORT]",
		Short: "look a hostname up in a region's tcs server (gRPC Lookup)",
		Args:  exactArgs(1),
	}
	fs := cmd.Flags()
	var conn connFlags
	conn.register(fs, e.getenv)
	regionName := fs.String("region", "", "region to ask (default: the first of --regions)")
	addr := fs.String("addr", "", "tcs gRPC address to ask, instead of a region's")
	out := addOutput(fs, "json", "yaml", "table")
	out.complete(cmd)
	cmd.RunE = e.action(func(ctx context.Context, pos []string) error {
		return runLookup(ctx, e, conn, *regionName, *addr, out, pos[0])
	})
	return cmd
}

func runLookup(ctx context.Context, e *env, conn connFlags, regionName, addr string, out *outputFlag, hostname string) error {
	if err := out.check(); err != nil {
		return err
	}
	if regionName != "" && addr != "" {
		return usagef("--region and --addr exclude each other")
	}
	pos := []string{hostname}
	c, err := conn.client(e)
	if err != nil {
		return err
	}
	defer c.Close()
	target := region{Name: regionName, Addr: addr}
	if addr == "" {
		rs := c.regions[:1]
		if regionName != "" {
			if rs, err = selectRegions(c.regions, []string{regionName}); err != nil {
				return err
			}
		}
		target = rs[0]
	}
	lc, err := c.dialer.lookupClient(target.Addr)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	res, err := lc.Lookup(rctx, &tcsv1.LookupRequest{Hostname: pos[0]})
	switch status.Code(err) {
	case codes.OK:
	case codes.NotFound:
		return finding("%s: no tenant owns %q (%s)", target.Addr, pos[0], status.Convert(err).Message())
	case codes.InvalidArgument:
		return finding("%q is not a valid hostname: %s", pos[0], status.Convert(err).Message())
	default:
		return fmt.Errorf("lookup %q at %s: %w", pos[0], target.Addr, err)
	}
	t, err := tcsv1.TenantFromProto(res.GetTenant())
	if err != nil {
		return fmt.Errorf("lookup %q: %w", pos[0], err)
	}
	ans := lookupAnswer{Hostname: pos[0], Region: res.GetRegion(), Addr: target.Addr,
		Stale: res.GetStale(), Age: res.GetAge().AsDuration().Round(time.Microsecond).String(), Tenant: t}
	return out.print(e.stdout, ans, func(w io.Writer) error {
		return table(w, []string{"HOSTNAME", "TENANT", "VERSION", "STATUS", "REGION", "STALE", "AGE"},
			[][]string{{ans.Hostname, t.ID, strconv.FormatInt(t.Version, 10), string(t.Status), ans.Region, strconv.FormatBool(ans.Stale), ans.Age}})
	})
}

func newGetCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get TENANT_ID",
		Short: "read a tenant from the catalog (the source of truth), as JSON by default",
		Long:  "get prints a tenant as the catalog stores it (JSON by default). tcsctl tenant get is the same with a table by default.",
		Args:  exactArgs(1),
	}
	var conn connFlags
	conn.register(cmd.Flags(), e.getenv)
	out := addOutput(cmd.Flags(), "json", "yaml", "table")
	out.complete(cmd)
	cmd.RunE = e.action(func(ctx context.Context, pos []string) error {
		return runGet(ctx, e, &conn, out, pos[0])
	})
	return cmd
}

func runGet(ctx context.Context, e *env, conn *connFlags, out *outputFlag, id string) error {
	if err := out.check(); err != nil {
		return err
	}
	c, err := conn.client(e)
	if err != nil {
		return err
	}
	defer c.Close()
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	doc, err := c.catalog.GetJSON(rctx, id)
	if httpclient.IsNotFound(err) {
		return finding("tenant %q: %v", id, err)
	}
	if err != nil {
		return fmt.Errorf("get tenant %q: %w", id, err)
	}
	switch out.format {
	case "json":
		// Exactly the catalog's document, indented.
		var b bytes.Buffer
		if err := json.Indent(&b, doc, "", "  "); err != nil {
			return fmt.Errorf("get tenant %q: %w", id, err)
		}
		b.WriteByte('\n')
		_, err = b.WriteTo(e.stdout)
		return err
	case "yaml":
		y, err := yaml.JSONToYAML(doc)
		if err != nil {
			return fmt.Errorf("get tenant %q: %w", id, err)
		}
		_, err = e.stdout.Write(y)
		return err
	}
	var t tenant.Tenant
	if err := json.Unmarshal(doc, &t); err != nil {
		return fmt.Errorf("get tenant %q: %w", id, err)
	}
	return tenantTable(e.stdout, []*tenant.Tenant{&t})
}
