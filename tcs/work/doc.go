// Package work shares the ACTIVE tenants of a region among the members of a
// work pool (tcs.v1.WorkService on the tcs nodes), so that each tenant's
// scheduled work (campaigns, reports, clean-ups) runs on exactly one
// compute node of the fleet at a time, with a fencing token its side
// effects can carry. The lease rules are internal/lease's; this package
// runs them for tenant buckets on behalf of the members.
//
// # Buckets
//
// A pool's tenants are split into Buckets (256) by FNV-1a of the tenant id:
// one lease per bucket in the group "work/<pool>", not one per tenant, so
// that reading a pool's leases costs the same for ten tenants or a million
// (on DynamoDB a List reads the whole group). A member owns the ACTIVE
// tenants of the buckets it holds. Balancing counts buckets, not tenants:
// members hold within one bucket of their share, and the tenants per member
// vary as hashing spreads them, about √(tenants/N) (3% of 1,000 with
// 10,000 tenants on 10 members, whatever the number of buckets). With the
// ids of TestBalance the furthest member is 9.5% off 1,000; over random
// tenant sets a few pools in a hundred have a member beyond ±10%.
//
// # Members
//
// A compute node joins with Join: a stream whose first message names the
// pool, the member id and its capacity, followed by heartbeats. The tcs node
// runs a Member for it: every LeaseDuration/8 it reads the pool's leases and
// plans with lease.Balance, taking free and expired buckets up to the
// member's share (capacity-weighted: each member keeps a record lease
// "m/<id>" holding its capacity, which gives the others the membership list
// and the weights), asking the most loaded member for more, handing buckets
// over politely when asked, and renewing what it holds every
// LeaseDuration/4. It acts only while the member's heartbeats arrive within
// LeaseDuration/2: a member that freezes stops being renewed, its buckets
// expire LeaseDuration after their last renewal (by each observer's own
// clock) and the others take them. A clean leave (the stream closed)
// releases them at once.
//
// # Fencing tokens
//
// A bucket's token is its lease's counter when its owner took it (written
// with the owner into the lease's checkpoint right after the take): it
// grows with every change of owner, and it is the same for every tenant of
// the bucket, so a store that keeps the highest token it saw per tenant and
// refuses lower ones refuses a former owner's late writes. Validate checks a
// token against the lease (for users without such a store): valid while
// the lease still names the owner that wrote it, so a frozen member's token
// is refused once its bucket was taken over.
//
// # What a member may count on
//
// Each assignment names a heartbeat (acked_seq): the latest one the node had
// received before the oldest renewal behind the assignment. Every lease
// behind it was therefore renewed after that heartbeat was sent, and none
// can be taken before LeaseDuration after its renewal, so the member may
// count on the assignment until, by its own clock, that heartbeat's sending
// plus 9/10 of the lease duration (the margin is for clocks that run at
// different rates), unless a later message extends it. tcs/client's Work
// drops an assignment that was not extended in time. At no instant do two
// members count on one tenant (TestExactlyOnceOwnership checks it under
// joins, leaves, crashes, pauses and clock rate skew).
//
// # Tenants
//
// The Index follows the region's replica: it scans it at start (and every
// 10 minutes, and when the feed reports a gap), and re-reads a tenant when
// an invalidation names it, so a tenant created, activated, suspended or
// deleted joins or leaves its owner's assignment as its change is applied
// in the node's region.
//
// # Concurrency cap
//
// A Join may name the pool's max_concurrent; the smallest any live member
// asks for is the cap. It is split among the live members by capacity
// (largest remainders, so the shares add up to the cap) and sent with each
// assignment; tcs/client's RunPerTenant runs at most that many of the
// member's tenants at once. The cap holds across the fleet while the
// members agree on the membership; while one joins or leaves, the shares of
// two views may briefly add up to more.
//
// # Backends and cost
//
// The leases of every pool live in one lease table: on AWS the home
// region's <prefix>-work-leases (workdynamo), shared by the tcs nodes of
// every region, so a pool spans regions and a member may rejoin through any
// of them; on the embedded family a memlease table in the process (tcs-dev:
// shared by its regions; tcs alone: that node only). A settled pool of 10
// members makes about 106 writes and 8 reads (Queries of ~40 KB) a second
// with the default 10 s lease, whatever the number of tenants
// (BenchmarkSteadyState): the writes are the 256 renewals every 2.5 s, so a
// longer lease duration costs proportionally less and hands a dead member's
// tenants over later (BenchmarkRebalanceAfterDeath: one lease duration).
package work
