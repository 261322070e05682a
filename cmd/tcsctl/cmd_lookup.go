package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

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

func runLookup(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "lookup", "HOSTNAME [--region R | --addr HOST:PORT]")
	var conn connFlags
	conn.register(fs, e.getenv)
	regionName := fs.String("region", "", "region to ask (default: the first of --regions)")
	addr := fs.String("addr", "", "tcs gRPC address to ask, instead of a region's")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if *regionName != "" && *addr != "" {
		return fmt.Errorf("--region and --addr exclude each other")
	}
	c, err := conn.client(e)
	if err != nil {
		return err
	}
	defer c.Close()
	target := region{Name: *regionName, Addr: *addr}
	if *addr == "" {
		rs := c.regions[:1]
		if *regionName != "" {
			if rs, err = selectRegions(c.regions, []string{*regionName}); err != nil {
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
	return printJSON(e.stdout, lookupAnswer{Hostname: pos[0], Region: res.GetRegion(), Addr: target.Addr,
		Stale: res.GetStale(), Age: res.GetAge().AsDuration().Round(time.Microsecond).String(), Tenant: t})
}

func runGet(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "get", "TENANT_ID")
	var conn connFlags
	conn.register(fs, e.getenv)
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	c, err := conn.client(e)
	if err != nil {
		return err
	}
	defer c.Close()
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	doc, err := c.catalog.GetJSON(rctx, pos[0])
	if httpclient.IsNotFound(err) {
		return finding("tenant %q: %v", pos[0], err)
	}
	if err != nil {
		return fmt.Errorf("get tenant %q: %w", pos[0], err)
	}
	var b bytes.Buffer
	if err := json.Indent(&b, doc, "", "  "); err != nil {
		return fmt.Errorf("get tenant %q: %w", pos[0], err)
	}
	b.WriteByte('\n')
	_, err = b.WriteTo(e.stdout)
	return err
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
