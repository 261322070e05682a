package main

import (
	"context"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// sampleTenants are created on the first start of a new data directory, so
// that there is something to look up.
func sampleTenants() []*tenant.Tenant {
	db := func(host, name, region string) *tenant.Database {
		return &tenant.Database{Engine: "postgres", Host: host, Port: 5432, Name: name, Region: region,
			SecretRef: "arn:aws:secretsmanager:" + region + ":123456789012:secret:tcs/" + name}
	}
	return []*tenant.Tenant{
		{ID: "acme", Hostnames: []string{"acme.example.com", "www.acme.example.com"}, Region: "us-east-1",
			Products: map[string]tenant.Product{"jira": {State: tenant.ProductActive, Users: 250, Edition: "premium"}, "confluence": {State: tenant.ProductActive, Users: 120, Edition: "standard"}},
			Database: db("db-7.us-east-1.internal", "acme", "us-east-1"), Labels: map[string]string{"tier": "gold"}},
		{ID: "globex", Hostnames: []string{"globex.example.com"}, Region: "eu-west-1",
			Products: map[string]tenant.Product{"jira": {State: tenant.ProductActive, Users: 40, Edition: "standard"}},
			Database: db("db-2.eu-west-1.internal", "globex", "eu-west-1")},
		{ID: "initech", Hostnames: []string{"initech.example.org", "bücher.initech.example.org"}, Region: "ap-southeast-2",
			Products: map[string]tenant.Product{"confluence": {State: tenant.ProductDeactivated, Users: 10}},
			Database: db("db-1.ap-southeast-2.internal", "initech", "ap-southeast-2"), Status: tenant.StatusSuspended},
	}
}

func seedTenants(ctx context.Context, store catalog.Store) (int, error) {
	n := 0
	for _, t := range sampleTenants() {
		if err := tenant.Prepare(t); err != nil {
			return n, err
		}
		if _, err := store.Create(ctx, t, "tcs-dev-seed"); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
