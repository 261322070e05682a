// Package chaos is TCS's chaos suite: it starts the AWS topology on the
// local emulators with every binary as its own process (catalog, streamer
// publish, per region a streamer apply and a tcs node, and a second applier
// in the first region), puts load on it — a writer through the REST API
// recording every acknowledged write and every error, readers in every
// region straight to the tcs node and through the client library recording
// every answer — and injects one fault at a time: kill -9 and restart of the
// publisher, an applier, a tcs node and the catalog; SIGSTOP/SIGCONT of
// SNS/SQS, DynamoDB Local and kinesalite; one of two appliers of a region
// killed for good. Afterwards it checks that every acknowledged write is in
// the catalog and in every region, that nothing was resurrected, that no
// reader saw a tenant's version go backwards, that tcsctl verify is clean
// and that every process serves again; it writes a report (JSON and
// Markdown, a table per fault) and fails when a bound of thresholds.json is
// exceeded.
//
// TestChaos runs the short variant (every fault, short windows, about three
// minutes: what make test and CI run); TCS_CHAOS=full selects the full one
// (make chaos). docs/chaos.md describes the suite, the report and the
// thresholds. Linux only: processes die with the suite through the
// parent-death signal, and faults are signals.
package chaos
