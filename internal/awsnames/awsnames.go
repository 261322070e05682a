// Package awsnames derives the name of every AWS resource of a TCS
// deployment from one prefix (the binaries' --aws-prefix; the CloudFormation
// templates' Prefix parameter). It depends on nothing, so that every binary
// can name what it opens without linking the code that creates it
// (infra/provision) or the stores it does not use.
package awsnames

// DefaultPrefix is the resource name prefix when none is configured.
const DefaultPrefix = "tcs"

// Names derives every resource name from Prefix ("" means DefaultPrefix).
type Names struct {
	Prefix string
}

// Base returns the prefix names are made of.
func (n Names) Base() string {
	if n.Prefix == "" {
		return DefaultPrefix
	}
	return n.Prefix
}

// CatalogTable is the source-of-truth table (home region).
func (n Names) CatalogTable() string { return n.Base() + "-catalog" }

// Stream is the change stream (home region).
func (n Names) Stream() string { return n.Base() + "-changes" }

// ReplicaTable is region's replica table.
func (n Names) ReplicaTable(region string) string { return n.Base() + "-replica-" + region }

// PublishLeaseTable is the lease table of the outbox publishers (home
// region): one lease per outbox shard, group "publish" (streamer/publease).
func (n Names) PublishLeaseTable() string { return n.Base() + "-publish-leases" }

// WorkLeaseTable is the lease table of the work pools (home region): one
// lease per bucket of tenants and per member of each pool, group
// "work/<pool>" (tcs/work, tcs/work/workdynamo).
func (n Names) WorkLeaseTable() string { return n.Base() + "-work-leases" }

// LeaseTable is the lease/checkpoint table of region's appliers.
func (n Names) LeaseTable(region string) string { return n.Base() + "-leases-" + region }

// Topic is region's invalidation topic.
func (n Names) Topic(region string) string { return n.Base() + "-invalidations-" + region }
