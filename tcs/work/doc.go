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
// tenants of the buckets it holds.
//
// # Balance
//
// Balancing counts tenants, not buckets: a bucket weighs its ACTIVE tenants
// in the node's Index (lease.Input.Weight), and a member's share is the
// pool's tenants times its capacity over the live members' total. Once the
// pool settles every member owns within max(share/20, h+m) tenants of its
// share, h the heaviest bucket and m = max(1, smallest share/40)
// (internal/lease's guarantee, asserted for every pool by its rapid
// property): within ±10% whenever the heaviest bucket is at most 7.5% of
// the smallest share, less one tenant. With 10,000 tenants on 10 equal
// members a share is 1,000 and a bucket about 39 tenants (the heaviest
// about 60), so every member is within ±10%, in practice within ±5%
// (TestBalance: 8 sets of ids, and capacities 1 to 3). Few tenants: with
// shares of a few tenants the bound is the heaviest bucket plus one (with
// one tenant a bucket, a member's tenants differ from its share by less
// than two); empty buckets weigh nothing and go to whoever sees them
// first. Hysteresis: nothing moves while every member is within share/20,
// and a bucket of w tenants moves only from a member e over its share to
// one d under it with w ≤ e + d − m, so tenants created and deleted a few
// at a time move no bucket back and forth (TestBalanceHysteresis). Every node of
// a pool must count about the same tenants: nodes of regions whose
// replicas lag disagree by the tenants in flight, which the margin absorbs.
//
// # Members
//
// A compute node joins with Join: a stream whose first message names the
// pool, the member id and its capacity, followed by heartbeats. The tcs node
// runs a Member for it: every LeaseDuration/8 it reads the pool's leases and
// plans with lease.Balance, taking free and expired buckets up to the
// member's share (capacity-weighted: each member keeps a record lease
// "m/<id>" holding its capacity, which gives the others the membership list
// and the weights), asking the member furthest over its share for more, and
// handing buckets over politely when asked (the requests show in the
// leases it reads). The record is also the liveness of the member's
// buckets: it is renewed every LeaseDuration/4, the buckets are not, and
// the others judge a bucket expired when its owner's record has not changed
// for LeaseDuration by their own clocks. The node acts only while the
// member's heartbeats arrive within LeaseDuration/2: a member that freezes
// stops being renewed, its record and so its buckets expire LeaseDuration
// after the record's last renewal, and the others take them. A member whose
// stream ends without Leave is treated the same way (its leases are not
// released): the node cannot tell it from a cut stream whose member still
// counts on its last assignment; if it rejoins, through any node, it keeps
// them. A member that sends Leave says it counts on none of its tenants
// (tcs/client's Work sends it when its ctx ends, once the receiver applied
// the empty assignment): the node releases its record and buckets at once
// (Member.Release), and the others take them at their next round
// (TestLeave).
//
// A bucket the member yields to another leaves its assignment at once but
// is handed over only once the member no longer counts on it. The node
// numbers the assignments of a stream (assignment_seq, Member.Sent), and
// the member echoes in its heartbeats the latest it applied (applied_seq:
// it stopped the work of every tenant that assignment lacks; tcs/client
// sends that heartbeat as soon as an assignment that dropped tenants is
// applied). An echo of an assignment sent after the yield (Member.Applied)
// hands the bucket over at once, the node running a round for it. Without
// one (a member that does not echo, or an assignment lost on its way) it
// waits a lease duration after the record's last renewal when it was
// yielded, when the member can no longer count on any assignment that had
// it. A handover then costs its tenants about a round of work instead of
// up to a lease duration (TestHandoverOnEcho: a member joining a settled
// one owns its share 2.5 s after joining, against 11.25 s without echoes,
// with a 10 s lease).
// TestExactlyOnceOwnership models assignments lost on their way, clients
// that apply them late or never echo, and clean leaves.
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
// received before the last renewal of the member's record. The record,
// the liveness of every bucket behind the assignment, was therefore renewed
// after that heartbeat was sent, and no bucket can be taken before
// LeaseDuration after that renewal, so the member may
// count on the assignment until, by its own clock, that heartbeat's sending
// plus 9/10 of the lease duration (the margin is for clocks that run at
// different rates), unless a later message extends it. tcs/client's Work
// drops an assignment that was not extended in time. A member that
// acknowledges an assignment (applied_seq) gives up, from then on, every
// tenant it lacks. At no instant do two members count on one tenant
// (TestExactlyOnceOwnership checks it under joins, leaves, crashes, pauses,
// clock rate skew, lost assignments and acknowledgements).
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
// shared by its regions; tcs alone: that node only), whose counters start
// from the clock (memlease.NewFromClock), so that fencing tokens keep
// growing when the process restarts and its leases start over. A settled pool of 10
// members makes 4 writes and 8 reads (strongly consistent Queries of
// ~40 KB) a second with the default 10 s lease, whatever the number of
// tenants (BenchmarkSteadyState): the writes are the members' record
// renewals, one per member every 2.5 s (when each bucket was renewed on
// its own, the 256 renewals made it 106). On DynamoDB on-demand that is
// about $13 a month of writes and $52 of reads per pool; the reads are
// each member's round every LeaseDuration/8. A longer lease duration costs
// proportionally less and hands a dead member's tenants over later
// (BenchmarkRebalanceAfterDeath: one lease duration).
package work
