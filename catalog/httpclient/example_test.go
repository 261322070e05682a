package httpclient_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/tcs-dev/tcs/catalog/httpclient"
)

// A read-modify-write of one tenant: read its version, write with If-Match,
// and start over if another writer got there first.
func Example() {
	ctx := context.Background()
	c, err := httpclient.New("http://127.0.0.1:8080", httpclient.WithToken(os.Getenv("TCS_ADMIN_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	for {
		t, err := c.Get(ctx, "acme")
		if httpclient.IsNotFound(err) {
			fmt.Println("no tenant acme")
			return
		}
		if err != nil {
			log.Fatal(err)
		}
		updated, err := c.Patch(ctx, "acme", t.Version, httpclient.MergePatch{"labels": map[string]any{"tier": "gold"}})
		if httpclient.IsVersionMismatch(err) {
			continue // changed since we read it: read again
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("acme is at version", updated.Version)
		return
	}
}
