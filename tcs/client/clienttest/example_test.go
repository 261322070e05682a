package clienttest_test

import (
	"context"
	"fmt"
	"log"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/client/clienttest"
)

// dbHost is code under test: it needs a *client.Client.
func dbHost(ctx context.Context, tcs *client.Client, host string) string {
	t, err := tcs.Lookup(ctx, host)
	if err != nil {
		return "error: " + err.Error()
	}
	return t.Database.Host
}

// A test loads the tenants it needs into a Server and hands the code under
// test a real Client of it.
func Example() {
	ctx := context.Background()
	srv, err := clienttest.NewServer(&tenant.Tenant{
		ID:        "acme",
		Hostnames: []string{"acme.example.com"},
		Database:  &tenant.Database{Engine: "postgres", Host: "db-1.internal", Port: 5432, Name: "acme"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	tcs, err := srv.NewClient(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tcs.Close()

	fmt.Println(dbHost(ctx, tcs, "acme.example.com"))
	fmt.Println(dbHost(ctx, tcs, "nobody.example.com"))

	// The tenant moves to another database: LookupAtLeast waits for the
	// change to reach the client.
	moved, err := srv.Put(&tenant.Tenant{
		ID:        "acme",
		Hostnames: []string{"acme.example.com"},
		Database:  &tenant.Database{Engine: "postgres", Host: "db-2.internal", Port: 5432, Name: "acme"},
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := tcs.LookupAtLeast(ctx, "acme.example.com", moved.Version); err != nil {
		log.Fatal(err)
	}
	fmt.Println(dbHost(ctx, tcs, "acme.example.com"))
	// Output:
	// db-1.internal
	// error: tcs: hostname not found
	// db-2.internal
}
