package client_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"os/signal"
	"syscall"
	"time"

	"github.com/tcs-dev/tcs/tcs/client"
)

// A per-tenant report job: every compute node of the fleet runs the same
// code; each tenant's report is built once an hour by exactly one node at a
// time, at most 8 at once across the fleet. The fencing token goes with
// the report's write, so that a node that lost the tenant mid-run (paused,
// partitioned) cannot overwrite the new owner's report.
func ExampleClient_RunPerTenant() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	c, err := client.New(ctx, client.WithRegions("tcs.eu-west-1.internal:9001", "tcs.us-east-1.internal:9001"),
		client.WithTLS(&tls.Config{MinVersion: tls.VersionTLS13}), client.WithToken("lookup-token"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	report := func(ctx context.Context, tenantID string, token uint64) error {
		// Your store keeps the highest token per tenant and refuses lower
		// ones: for example
		//   UPDATE reports SET body = $1, token = $2
		//   WHERE tenant = $3 AND token <= $2
		fmt.Println("building the report of", tenantID, "under token", token)
		return nil
	}
	err = c.RunPerTenant(ctx, "reports", 1, time.Hour, report,
		func(tenantID string, err error) { log.Printf("report of %s: %v", tenantID, err) },
		client.WithPoolMaxConcurrent(8))
	if err != nil {
		log.Fatal(err)
	}
}
