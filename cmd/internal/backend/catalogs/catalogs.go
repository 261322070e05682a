// Package catalogs opens the source of truth of the backend family a
// backend.Config selects: the bbolt catalog in the data directory, or the
// DynamoDB catalog table in the home region.
package catalogs

import (
	"context"
	"errors"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/bolt"
	catalogdynamo "github.com/tcs-dev/tcs/catalog/dynamo"
	"github.com/tcs-dev/tcs/cmd/internal/backend"
)

// Open opens the source of truth.
func Open(ctx context.Context, c *backend.Config) (catalog.Store, error) {
	if !c.IsAWS() {
		data, err := c.Data()
		if err != nil {
			return nil, err
		}
		return bolt.Open(data.Catalog(), bolt.Options{})
	}
	cl, err := c.Clients(ctx, c.HomeRegion)
	if err != nil {
		return nil, err
	}
	return catalogdynamo.Open(ctx, catalogdynamo.Config{Client: cl.DynamoDB, Table: c.Names.CatalogTable()})
}

// MigrateLayout moves the AWS catalog table from the unsharded layout of
// TCS 0.x to the sharded one (catalogdynamo.MigrateLayout) and returns the
// table's name and how many tenants it moved. The embedded catalog has one
// layout: asking is an error.
func MigrateLayout(ctx context.Context, c *backend.Config) (string, int, error) {
	if !c.IsAWS() {
		return "", 0, errors.New("the embedded catalog (bbolt) has one layout: there is nothing to migrate (--migrate-layout is for --backend aws)")
	}
	cl, err := c.Clients(ctx, c.HomeRegion)
	if err != nil {
		return "", 0, err
	}
	table := c.Names.CatalogTable()
	n, err := catalogdynamo.MigrateLayout(ctx, cl.DynamoDB, table)
	return table, n, err
}
