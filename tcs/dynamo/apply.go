package dynamo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/backoff"
	"github.com/tcs-dev/tcs/tcs"
)

// Apply applies ev with tcs.ApplyEvent: read, decide, and commit one
// conditioned transaction, again from fresh reads if it is cancelled. Events
// that need more than 100 items are split safely (see the package comment).
// See tcs.Replica.
func (r *Replica) Apply(ctx context.Context, ev *tenant.ChangeEvent) (tcs.ApplyResult, error) {
	if ev == nil {
		return tcs.ApplyResult{}, tenant.Errorf(tenant.Invalid, "dynamo replica apply: nil event")
	}
	if err := ctx.Err(); err != nil {
		return tcs.ApplyResult{}, err
	}
	op := fmt.Sprintf("dynamo replica apply tenant %q version %d", ev.TenantID, ev.Version)
	var out result
	err := r.withRetries(ctx, op, func() error { return r.tryApply(ctx, ev, &out) })
	if err != nil {
		return tcs.ApplyResult{}, err
	}
	return out.ApplyResult(), nil
}

// result accumulates what the attempts of one Apply changed: an attempt may
// commit part of its writes (a split apply, or a releases-only event in
// several transactions) before a later one is cancelled.
type result struct {
	applied   bool
	hostnames map[string]bool
	// maybeApplied records that a transaction writing the document failed
	// in a way that leaves its outcome unknown (the response was lost): if
	// a later attempt finds the event's version stored, it was this Apply's.
	maybeApplied bool
}

// failed notes a transaction of an attempt that failed with err. Unless
// DynamoDB said it cancelled the transaction, it may have committed: the
// attempt's hostnames are reported, so that the next attempt, which then
// finds nothing to do, does not hide them from the lookup caches.
func (res *result) failed(err error, hostnames []string, doc bool) {
	var (
		cancelled *types.TransactionCanceledException
		conflict  *types.TransactionConflictException
	)
	if errors.As(err, &cancelled) || errors.As(err, &conflict) {
		return
	}
	res.add(hostnames)
	res.maybeApplied = res.maybeApplied || doc
}

func (res *result) add(hostnames []string) {
	if res.hostnames == nil {
		res.hostnames = map[string]bool{}
	}
	for _, h := range hostnames {
		res.hostnames[h] = true
	}
}

func (res *result) ApplyResult() tcs.ApplyResult {
	out := tcs.ApplyResult{Applied: res.applied}
	for h := range res.hostnames {
		out.Hostnames = append(out.Hostnames, h)
	}
	slices.Sort(out.Hostnames)
	return out
}

// tryApply makes one attempt: it finishes a split apply left unfinished on
// ev's tenant, then reads, decides with tcs.ApplyEvent and commits.
func (r *Replica) tryApply(ctx context.Context, ev *tenant.ChangeEvent, out *result) error {
	var extra []string
	if ev.Tenant != nil {
		extra = ev.Tenant.Hostnames
	}
	x, err := r.readForEvent(ctx, ev, extra)
	if err != nil {
		return err
	}
	for x.stored.pending != "" {
		if err := r.finishPending(ctx, ev.TenantID, x.stored, out); err != nil {
			return err
		}
		if x, err = r.readForEvent(ctx, ev, extra); err != nil {
			return err
		}
	}
	res, err := tcs.ApplyEvent(x, ev)
	if err != nil {
		return err
	}
	if !res.Applied && out.maybeApplied && x.stored.doc != nil && x.stored.doc.Version == ev.Version {
		out.applied = true
	}
	commit := func(items []types.TransactWriteItem) error {
		err := r.transact(ctx, items)
		if err != nil {
			out.failed(err, res.Hostnames, x.newDoc != nil)
		}
		return err
	}
	writes := x.hostWrites()
	switch {
	case x.newDoc == nil:
		// No document to replace: releases, or the records a resync of
		// the stored document repairs (none when the region is healthy).
		// Each write is conditioned on the record it read and safe on its
		// own, so any number of transactions will do.
		if len(writes) == 0 {
			out.add(res.Hostnames) // a redelivery's, sent again
		}
		for chunk := range slices.Chunk(writes, maxTxItems) {
			if err := commit(chunk); err != nil {
				return err
			}
			out.add(res.Hostnames)
		}
		out.applied = out.applied || res.Applied
		return nil
	case len(writes) < maxTxItems:
		put, err := r.docPut(x.newDoc, x.stored, "")
		if err != nil {
			return err
		}
		if err := commit(append(writes, put)); err != nil {
			return err
		}
		out.applied = true
		out.add(res.Hostnames)
		return nil
	}
	// Too many items for one transaction: commit the document with the
	// work still to do, then finish it.
	pending, err := encodePending(x.stored.doc, ev)
	if err != nil {
		return err
	}
	put, err := r.docPut(x.newDoc, x.stored, pending)
	if err != nil {
		return err
	}
	if err := commit([]types.TransactWriteItem{put}); err != nil {
		return err
	}
	out.applied = true
	out.add(res.Hostnames)
	return r.finishPending(ctx, ev.TenantID, docState{exists: true, rev: x.stored.rev + 1, doc: x.newDoc, pending: pending}, out)
}

// pendingWork is what a split apply still has to do once its document is
// committed: ev's claims and releases, and the document ApplyEvent read
// before it (nil if there was none), so that ApplyEvent can be replayed.
type pendingWork struct {
	Prev     *prevDoc       `json:"prev,omitempty"`
	Claims   []tenant.Claim `json:"claims,omitempty"`
	Released []tenant.Claim `json:"released,omitempty"`
	Resync   bool           `json:"resync,omitempty"`
}

// prevDoc is what ApplyEvent reads of a stored document it replaces.
type prevDoc struct {
	Version   int64    `json:"version"`
	Hostnames []string `json:"hostnames,omitempty"`
}

func encodePending(prev *tenant.Tenant, ev *tenant.ChangeEvent) (string, error) {
	p := pendingWork{Claims: ev.Claims, Released: ev.Released, Resync: ev.Resync}
	if prev != nil {
		p.Prev = &prevDoc{Version: prev.Version, Hostnames: prev.Hostnames}
	}
	raw, err := json.Marshal(p)
	return string(raw), err
}

// finishPending completes the split apply whose document st was read (or
// written) with pending work: it replays ApplyEvent for the stored event
// against the document it replaced, and commits the hostname records that
// still need writing in transactions of up to 99, each conditioned on the
// document's rev; the last one removes pending. If the document moved on
// (someone else finished the work first), a condition fails and the caller
// reads again.
func (r *Replica) finishPending(ctx context.Context, id string, st docState, out *result) error {
	var p pendingWork
	if err := json.Unmarshal([]byte(st.pending), &p); err != nil {
		return fmt.Errorf("decode pending work of stored tenant %s: %s", id, err)
	}
	ev := &tenant.ChangeEvent{TenantID: id, Version: st.doc.Version, Tenant: st.doc, Claims: p.Claims, Released: p.Released, Resync: p.Resync}
	x := &applyTxn{id: id}
	if p.Prev != nil {
		x.stored = docState{exists: true, doc: &tenant.Tenant{ID: id, Version: p.Prev.Version, Hostnames: p.Prev.Hostnames}}
	}
	var names []string
	if x.stored.doc != nil {
		names = x.stored.doc.Hostnames
	}
	names = append(append(names, eventHostnames(ev)...), st.doc.Hostnames...)
	hosts, err := r.readHosts(ctx, names)
	if err != nil {
		return err
	}
	x.hosts, x.r, x.ctx = hosts, r, ctx
	res, err := tcs.ApplyEvent(x, ev)
	if err != nil {
		return fmt.Errorf("replay pending work of stored tenant %s: %w", id, err)
	}
	if !res.Applied {
		return fmt.Errorf("internal: pending work of stored tenant %s replays as a no-op", id)
	}
	cond := map[string]types.AttributeValue{":rev": num(st.rev)}
	revName := map[string]string{"#rev": attrRev}
	writes := x.hostWrites()
	chunks := slices.Collect(slices.Chunk(writes, maxTxItems-1))
	if len(chunks) == 0 {
		chunks = [][]types.TransactWriteItem{nil}
	}
	for i, chunk := range chunks {
		var doc types.TransactWriteItem
		if i < len(chunks)-1 {
			doc.ConditionCheck = &types.ConditionCheck{
				TableName: r.table, Key: key(prefixDoc + id),
				ConditionExpression:       aws.String("#rev = :rev"),
				ExpressionAttributeNames:  revName,
				ExpressionAttributeValues: cond,
			}
		} else {
			doc.Update = &types.Update{
				TableName: r.table, Key: key(prefixDoc + id),
				UpdateExpression:         aws.String("REMOVE #p SET #rev = :next"),
				ConditionExpression:      aws.String("#rev = :rev"),
				ExpressionAttributeNames: map[string]string{"#rev": attrRev, "#p": attrPending},
				ExpressionAttributeValues: map[string]types.AttributeValue{
					":rev": num(st.rev), ":next": num(st.rev + 1),
				},
			}
		}
		if err := r.transact(ctx, append(chunk, doc)); err != nil {
			out.failed(err, res.Hostnames, false)
			return err
		}
		out.add(res.Hostnames)
	}
	return nil
}

// transact commits items in one TransactWriteItems. A cancellation that a
// fresh attempt cannot resolve (a validation error) is an internal error;
// any other failure is a failed call, transient or not.
func (r *Replica) transact(ctx context.Context, items []types.TransactWriteItem) error {
	_, err := r.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
	var cancelled *types.TransactionCanceledException
	if errors.As(err, &cancelled) && !retryableCancel(cancelled) {
		return fmt.Errorf("transaction of %d items refused: %w", len(items), err)
	}
	return callErr(err)
}

// docPut writes d over the document item read as prev, conditioned on prev
// (its rev covers version, deleted, doc and pending), with pending work if
// pending is not "".
func (r *Replica) docPut(d *tenant.Tenant, prev docState, pending string) (types.TransactWriteItem, error) {
	raw, err := json.Marshal(d)
	if err != nil {
		return types.TransactWriteItem{}, fmt.Errorf("encode tenant %s: %w", d.ID, err)
	}
	put := &types.Put{
		TableName: r.table,
		Item: map[string]types.AttributeValue{
			attrPK:      str(prefixDoc + d.ID),
			attrVersion: num(d.Version),
			attrDeleted: &types.AttributeValueMemberBOOL{Value: d.Deleted()},
			attrDoc:     str(string(raw)),
			attrRev:     num(prev.rev + 1),
		},
	}
	if pending != "" {
		put.Item[attrPending] = str(pending)
	}
	if !prev.exists {
		put.ConditionExpression = aws.String("attribute_not_exists(#pk)")
		put.ExpressionAttributeNames = map[string]string{"#pk": attrPK}
	} else {
		put.ConditionExpression = aws.String("#v = :v AND #rev = :rev")
		put.ExpressionAttributeNames = map[string]string{"#v": attrVersion, "#rev": attrRev}
		put.ExpressionAttributeValues = map[string]types.AttributeValue{":v": num(prev.doc.Version), ":rev": num(prev.rev)}
	}
	return types.TransactWriteItem{Put: put}, nil
}

// hostPut writes rec for hostname over the record read as prev, conditioned
// on prev.
func (r *Replica) hostPut(hostname string, rec tcs.HostRecord, prev hostState) types.TransactWriteItem {
	put := &types.Put{
		TableName: r.table,
		Item: map[string]types.AttributeValue{
			attrPK:           str(prefixHost + hostname),
			attrOwner:        str(rec.TenantID),
			attrClaimVersion: num(rec.ClaimVersion),
		},
	}
	if !prev.exists {
		put.ConditionExpression = aws.String("attribute_not_exists(#pk)")
		put.ExpressionAttributeNames = map[string]string{"#pk": attrPK}
	} else {
		put.ConditionExpression = aws.String("#cv = :cv AND #o = :o")
		put.ExpressionAttributeNames = map[string]string{"#cv": attrClaimVersion, "#o": attrOwner}
		put.ExpressionAttributeValues = map[string]types.AttributeValue{":cv": num(prev.rec.ClaimVersion), ":o": str(prev.rec.TenantID)}
	}
	return types.TransactWriteItem{Put: put}
}

// eventHostnames returns every hostname ev names.
func eventHostnames(ev *tenant.ChangeEvent) []string {
	var out []string
	for _, c := range ev.Claims {
		out = append(out, c.Hostname)
	}
	for _, c := range ev.Released {
		out = append(out, c.Hostname)
	}
	return out
}

// readForEvent reads, strongly consistent, what ApplyEvent will ask for:
// one batch for ev's document, the hostnames ev names and extra; one more
// for the hostnames only the stored document holds.
func (r *Replica) readForEvent(ctx context.Context, ev *tenant.ChangeEvent, extra []string) (*applyTxn, error) {
	x := &applyTxn{r: r, ctx: ctx, id: ev.TenantID}
	names := append(eventHostnames(ev), extra...)
	keys := []string{prefixDoc + ev.TenantID}
	for _, h := range names {
		keys = append(keys, prefixHost+h)
	}
	items, err := r.batchGet(ctx, keys)
	if err != nil {
		return nil, err
	}
	if x.stored, err = parseDocItem(ev.TenantID, items[prefixDoc+ev.TenantID]); err != nil {
		return nil, err
	}
	x.hosts = make(map[string]hostState, len(names))
	for _, h := range names {
		if x.hosts[h], err = parseHost(h, items[prefixHost+h]); err != nil {
			return nil, err
		}
	}
	if x.stored.doc != nil {
		var more []string
		for _, h := range x.stored.doc.Hostnames {
			if _, ok := x.hosts[h]; !ok {
				more = append(more, h)
			}
		}
		if len(more) > 0 {
			hosts, err := r.readHosts(ctx, more)
			if err != nil {
				return nil, err
			}
			for h, st := range hosts {
				x.hosts[h] = st
			}
		}
	}
	return x, nil
}

// readHosts reads the records of hostnames, strongly consistent.
func (r *Replica) readHosts(ctx context.Context, hostnames []string) (map[string]hostState, error) {
	keys := make([]string, len(hostnames))
	for i, h := range hostnames {
		keys[i] = prefixHost + h
	}
	items, err := r.batchGet(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := make(map[string]hostState, len(hostnames))
	for _, h := range hostnames {
		if out[h], err = parseHost(h, items[prefixHost+h]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// errUnprocessed reports a BatchGetItem that kept leaving keys unprocessed
// (throttling): transient.
var errUnprocessed = errors.New("BatchGetItem left keys unprocessed")

// batchGet reads the items of the distinct partition keys keys, strongly
// consistent, 100 at a time, asking again for what DynamoDB leaves
// unprocessed. It returns the items found by partition key. The reads are
// not one snapshot: the writes decided from them are conditioned on them.
func (r *Replica) batchGet(ctx context.Context, keys []string) (map[string]map[string]types.AttributeValue, error) {
	slices.Sort(keys)
	keys = slices.Compact(keys)
	items := make(map[string]map[string]types.AttributeValue, len(keys))
	for batch := range slices.Chunk(keys, maxBatchGet) {
		ks := make([]map[string]types.AttributeValue, len(batch))
		for i, k := range batch {
			ks[i] = key(k)
		}
		req := map[string]types.KeysAndAttributes{*r.table: {Keys: ks, ConsistentRead: aws.Bool(true)}}
		wait := backoff.New(10*time.Millisecond, time.Second, backoff.Around)
		for round := 0; ; round++ {
			out, err := r.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return nil, callErr(err)
			}
			for _, item := range out.Responses[*r.table] {
				pk, ok := item[attrPK].(*types.AttributeValueMemberS)
				if !ok {
					return nil, fmt.Errorf("stored item without a key: %v", item)
				}
				items[pk.Value] = item
			}
			req = out.UnprocessedKeys
			if len(req[*r.table].Keys) == 0 {
				break
			}
			if round == 5 {
				return nil, errUnprocessed
			}
			if err := wait.Wait(ctx); err != nil {
				return nil, err
			}
		}
	}
	return items, nil
}

// applyTxn is the tcs.ApplyTxn of one Apply attempt: reads come from what
// readForEvent read (a hostname it did not read is read on demand), writes
// are buffered until the attempt commits them.
type applyTxn struct {
	r   *Replica
	ctx context.Context
	id  string

	stored docState
	hosts  map[string]hostState

	newDoc *tenant.Tenant
	puts   map[string]tcs.HostRecord
	order  []string // hostnames of puts, first put first
}

var _ tcs.ApplyTxn = (*applyTxn)(nil)

func (x *applyTxn) Doc(id string) (*tenant.Tenant, error) {
	if id != x.id {
		return nil, fmt.Errorf("internal: apply of tenant %s read tenant %s", x.id, id)
	}
	if x.newDoc != nil {
		return x.newDoc, nil
	}
	return x.stored.doc, nil
}

func (x *applyTxn) PutDoc(t *tenant.Tenant) error {
	if t.ID != x.id {
		return fmt.Errorf("internal: apply of tenant %s wrote tenant %s", x.id, t.ID)
	}
	x.newDoc = t
	return nil
}

func (x *applyTxn) Host(hostname string) (tcs.HostRecord, bool, error) {
	if rec, ok := x.puts[hostname]; ok {
		return rec, true, nil
	}
	st, ok := x.hosts[hostname]
	if !ok {
		hosts, err := x.r.readHosts(x.ctx, []string{hostname})
		if err != nil {
			return tcs.HostRecord{}, false, err
		}
		st = hosts[hostname]
		x.hosts[hostname] = st
	}
	return st.rec, st.exists, nil
}

func (x *applyTxn) PutHost(hostname string, rec tcs.HostRecord) error {
	if x.puts == nil {
		x.puts = map[string]tcs.HostRecord{}
	}
	if _, ok := x.puts[hostname]; !ok {
		x.order = append(x.order, hostname)
	}
	x.puts[hostname] = rec
	return nil
}

// hostWrites returns the buffered hostname writes as conditioned puts,
// leaving out those that would store what is already stored.
func (x *applyTxn) hostWrites() []types.TransactWriteItem {
	var out []types.TransactWriteItem
	for _, h := range x.order {
		rec, prev := x.puts[h], x.hosts[h]
		if prev.exists && prev.rec == rec {
			continue
		}
		out = append(out, x.r.hostPut(h, rec, prev))
	}
	return out
}
