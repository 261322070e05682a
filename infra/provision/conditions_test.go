package provision_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/tcs-dev/tcs/catalog"
	catalogdynamo "github.com/tcs-dev/tcs/catalog/dynamo"
	"github.com/tcs-dev/tcs/catalog/propagation/dynamonodes"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/infra/cloudformation"
	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/infra/provision"
	"github.com/tcs-dev/tcs/streamer/publease"
	"github.com/tcs-dev/tcs/tcs"
	tcssns "github.com/tcs-dev/tcs/tcs/sns"
)

// The IAM conditions are checked against the calls the code really makes:
// the catalog store and the publisher run against DynamoDB Local and a tcs
// node's Feed against fauxqs, through recorders that note each call's
// action and condition keys; each recorded call must be allowed by its
// role's policy, and what a role must not do must be denied. The drift
// checks are functions of the templates, so that TestDriftCatchesWeakenedPolicies
// can show each of them failing on a template with a condition, a deny
// statement or the encryption removed.

// calls is what the code did, as IAM requests.
type calls struct {
	catalog   []request // the catalog's writes and reads
	publisher []request // streamer publish: read and acknowledge the outbox
	// reconciler: streamer reconcile's catalog calls (export, resync)
	reconciler []request
	node       []request // a tcs node subscribing and unsubscribing its queue
	// auditPuts are the catalog's and the reconciler's (resync) puts of
	// audit items, with their condition expressions.
	auditPuts []string
}

// catalogTableARN is the catalog table's ARN in the templates' terms (the
// recorded calls went to an emulator table with another name).
var catalogTableARN = "arn:aws:dynamodb:" + home + ":123456789012:table/" + names.CatalogTable()

var (
	recordOnce sync.Once
	recorded   calls
	recordErr  error
)

// record runs the code against the emulators once per test binary.
func record(t *testing.T) calls {
	t.Helper()
	emulators.SharedAWS(t).Setenv(t)
	recordOnce.Do(func() { recorded, recordErr = recordCalls(t) })
	if recordErr != nil {
		t.Fatal(recordErr)
	}
	return recorded
}

func recordCalls(t *testing.T) (calls, error) {
	ctx := context.Background()
	c := clients(t)
	n := provision.Names{Prefix: emulators.Name("prov-iam")}
	var out strings.Builder
	plan := provision.Plan{Names: n, HomeRegion: home, Regions: []string{serving}, Shards: 1}
	if err := provision.Apply(ctx, plan, c, &out); err != nil {
		return calls{}, fmt.Errorf("apply: %v\n%s", err, &out)
	}
	var got calls

	// The catalog: every kind of write, and the reads.
	cat := &dynamoRecorder{API: c.DynamoDB(home)}
	store, err := catalogdynamo.Open(ctx, catalogdynamo.Config{Client: cat, Table: n.CatalogTable()})
	if err != nil {
		return got, err
	}
	created, err := store.Create(ctx, storetest.NewTenant("acme", "acme.example.com"), "admin")
	if err != nil {
		return got, fmt.Errorf("create: %w", err)
	}
	upd := *created
	upd.Hostnames = []string{"www.acme.example.com"}
	if _, err := store.Update(ctx, &upd, created.Version, "admin"); err != nil {
		return got, fmt.Errorf("update: %w", err)
	}
	if _, err := store.Create(ctx, storetest.NewTenant("globex", "globex.example.com"), "admin"); err != nil {
		return got, fmt.Errorf("create: %w", err)
	}
	if _, err := store.Delete(ctx, "globex", 0, "admin"); err != nil {
		return got, fmt.Errorf("delete: %w", err)
	}
	if _, err := store.Resync(ctx, []catalog.ResyncRequest{{ID: "acme"}}, nil); err != nil {
		return got, fmt.Errorf("resync: %w", err)
	}
	if _, _, err := store.ResyncAll(ctx, "", 10, nil); err != nil {
		return got, fmt.Errorf("resync all: %w", err)
	}
	if _, err := store.Get(ctx, "acme"); err != nil {
		return got, fmt.Errorf("get: %w", err)
	}
	if _, err := store.LookupHostname(ctx, "www.acme.example.com"); err != nil {
		return got, fmt.Errorf("lookup: %w", err)
	}
	if _, err := store.List(ctx, catalog.ListOptions{}); err != nil {
		return got, fmt.Errorf("list: %w", err)
	}
	if _, err := store.History(ctx, "acme", catalog.HistoryOptions{}); err != nil {
		return got, fmt.Errorf("history: %w", err)
	}
	if _, err := store.Export(ctx, catalog.ListOptions{}); err != nil {
		return got, fmt.Errorf("export: %w", err)
	}
	got.catalog, got.auditPuts = cat.requests(catalogTableARN)
	if cat.err != nil {
		return got, cat.err
	}

	// The publisher: measure the outbox's depth, read it, acknowledge it.
	pub := &dynamoRecorder{API: c.DynamoDB(home)}
	outbox, err := catalogdynamo.Open(ctx, catalogdynamo.Config{Client: pub, Table: n.CatalogTable()})
	if err != nil {
		return got, err
	}
	if _, _, err := outbox.OutboxDepth(ctx, 1000); err != nil {
		return got, fmt.Errorf("outbox depth: %w", err)
	}
	// As the publisher reads: the shards' heads, then the shards that
	// moved.
	heads, err := outbox.OutboxHeads(ctx)
	if err != nil {
		return got, fmt.Errorf("outbox heads: %w", err)
	}
	acked := 0
	for shard, head := range heads {
		if head == 0 {
			continue
		}
		entries, err := outbox.ReadOutbox(ctx, shard, 0, 100)
		if err != nil {
			return got, fmt.Errorf("read outbox shard %d: %w", shard, err)
		}
		if len(entries) == 0 {
			continue
		}
		if err := outbox.AckOutbox(ctx, shard, entries[len(entries)-1].Seq); err != nil {
			return got, fmt.Errorf("ack outbox: %w", err)
		}
		acked += len(entries)
	}
	if acked == 0 {
		return got, fmt.Errorf("read outbox: no entries")
	}
	got.publisher, _ = pub.requests(catalogTableARN)
	if pub.err != nil {
		return got, pub.err
	}
	// The reconciler: export the catalog, resync a drifted tenant to one
	// region, as streamer/reconcile does.
	recon := &dynamoRecorder{API: c.DynamoDB(home)}
	rstore, err := catalogdynamo.Open(ctx, catalogdynamo.Config{Client: recon, Table: n.CatalogTable()})
	if err != nil {
		return got, err
	}
	if _, err := rstore.Export(ctx, catalog.ListOptions{}); err != nil {
		return got, fmt.Errorf("reconciler export: %w", err)
	}
	if _, err := rstore.Resync(ctx, []catalog.ResyncRequest{{ID: "acme"}}, []string{serving}); err != nil {
		return got, fmt.Errorf("reconciler resync: %w", err)
	}
	var reconAuditPuts []string
	got.reconciler, reconAuditPuts = recon.requests(catalogTableARN)
	got.auditPuts = append(got.auditPuts, reconAuditPuts...)
	if recon.err != nil {
		return got, recon.err
	}

	// The publisher's outbox shard leases: open the table, take every
	// lease, renew, release on stop.
	leaseCalls, err := recordPublishLeases(ctx, c, n)
	if err != nil {
		return got, err
	}
	got.publisher = append(got.publisher, leaseCalls...)

	// A tcs node: subscribe a queue to the topic, then stop cleanly
	// (unsubscribe, delete the queue).
	got.node, err = recordNode(ctx, c, n)
	return got, err
}

// publishLeaseTableARN is the publishers' lease table's ARN in the
// templates' terms.
var publishLeaseTableARN = "arn:aws:dynamodb:" + home + ":123456789012:table/" + names.PublishLeaseTable()

// leaseRecorder notes the IAM action of each call to the publishers' lease
// table.
type leaseRecorder struct {
	publease.API
	mu      sync.Mutex
	actions []string
}

func (r *leaseRecorder) note(action string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.actions = append(r.actions, "dynamodb:"+action)
}

func (r *leaseRecorder) DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, o ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	r.note("DescribeTable")
	return r.API.DescribeTable(ctx, in, o...)
}

func (r *leaseRecorder) Query(ctx context.Context, in *dynamodb.QueryInput, o ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	r.note("Query")
	return r.API.Query(ctx, in, o...)
}

func (r *leaseRecorder) PutItem(ctx context.Context, in *dynamodb.PutItemInput, o ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	r.note("PutItem")
	return r.API.PutItem(ctx, in, o...)
}

func (r *leaseRecorder) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	r.note("UpdateItem")
	return r.API.UpdateItem(ctx, in, o...)
}

// recordPublishLeases runs a publisher's lease keeping until it holds
// every lease and has renewed them, then stops it (releasing them).
func recordPublishLeases(ctx context.Context, c provision.Clients, n provision.Names) ([]request, error) {
	rec := &leaseRecorder{API: c.DynamoDB(home)}
	const shards = 4
	l, err := publease.Open(ctx, rec, n.PublishLeaseTable(), "publisher-1", publease.Config{Shards: shards, LeaseDuration: time.Second})
	if err != nil {
		return nil, err
	}
	kctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- l.Keep(kctx) }()
	deadline := time.Now().Add(30 * time.Second)
	renewed := func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return slices.Index(rec.actions, "dynamodb:UpdateItem") >= 0 && len(rec.actions) > 2*shards+4
	}
	for len(l.Held()) < shards || !renewed() {
		if time.Now().After(deadline) {
			cancel()
			<-done
			return nil, fmt.Errorf("the publisher held %d of %d leases after 30s", len(l.Held()), shards)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		return nil, err
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var reqs []request
	for _, a := range rec.actions {
		reqs = append(reqs, request{action: a, resource: publishLeaseTableARN})
	}
	return reqs, nil
}

func recordNode(ctx context.Context, c provision.Clients, n provision.Names) ([]request, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(serving))
	if err != nil {
		return nil, err
	}
	arn, err := tcssns.LookupTopic(ctx, c.SNS(serving), n.Topic(serving))
	if err != nil {
		return nil, err
	}
	rec := &queueRecorder{SNSAPI: c.SNS(serving), SQSAPI: awssqs.NewFromConfig(cfg), realPrefix: n.Prefix}
	feed := func(node string, now func() time.Time) (*tcssns.Feed, error) {
		return tcssns.OpenFeed(ctx, tcssns.Config{SNS: rec, SQS: rec, TopicARN: arn, Region: serving, Prefix: n.Prefix,
			NodeID: node, SweepInterval: -1, SettleTime: -1, Now: now})
	}

	// node-1 subscribes and stops cleanly, deleting its own queue.
	node1, err := feed("node-1", nil)
	if err != nil {
		return nil, err
	}
	stop, err := subscribe(ctx, node1, rec, 1)
	if err != nil {
		return nil, err
	}
	if err := stop(); err != nil {
		return nil, fmt.Errorf("node-1: %w", err)
	}

	// node-2 subscribes; node-3, whose clock is an hour ahead, finds
	// node-2's queue stale and sweeps it, as a node sweeps a crashed one's.
	node2, err := feed("node-2", nil)
	if err != nil {
		return nil, err
	}
	stop, err = subscribe(ctx, node2, rec, 2)
	if err != nil {
		return nil, err
	}
	node3, err := feed("node-3", func() time.Time { return time.Now().Add(time.Hour) })
	if err != nil {
		stop()
		return nil, err
	}
	removed, err := node3.Sweep(ctx)
	if err := stop(); err != nil && !errors.Is(err, tcssns.ErrQueueGone) {
		return nil, fmt.Errorf("node-2: %w", err)
	}
	if err != nil || !slices.ContainsFunc(removed, func(q string) bool { return strings.Contains(q, "node-2") }) {
		return nil, fmt.Errorf("node-3's sweep removed %v (%v), want node-2's queue", removed, err)
	}
	return rec.requests(), nil
}

// subscribe runs f.Subscribe until the recorder has seen the subs-th
// subscription; stop ends it and returns what Subscribe returned.
func subscribe(ctx context.Context, f *tcssns.Feed, rec *queueRecorder, subs int) (stop func() error, err error) {
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.Subscribe(sctx, func(tcs.Invalidation) {}, func() {}) }()
	stop = func() error { cancel(); return <-done }
	deadline := time.After(30 * time.Second)
	for rec.subscriptions() < subs {
		select {
		case err := <-done:
			cancel()
			return nil, fmt.Errorf("subscribe ended before subscribing: %v", err)
		case <-deadline:
			stop()
			return nil, fmt.Errorf("the feed did not subscribe within 30s")
		case <-time.After(10 * time.Millisecond):
		}
	}
	return stop, nil
}

// dynamoRecorder notes the IAM request behind each call to the catalog
// table.
type dynamoRecorder struct {
	catalogdynamo.API
	mu    sync.Mutex
	calls []recordedCall
	err   error
}

type recordedCall struct {
	action string
	keys   []string // partition keys touched (dynamodb:LeadingKeys)
	cond   string   // the condition expression of a put
}

func (r *dynamoRecorder) note(action string, cond string, keys ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, recordedCall{action: "dynamodb:" + action, keys: keys, cond: cond})
}

func (r *dynamoRecorder) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

// requests returns the recorded calls as requests on table, and the
// condition expressions of the puts of audit items.
func (r *dynamoRecorder) requests(table string) (reqs []request, auditPuts []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.calls {
		req := request{action: c.action, resource: table}
		if len(c.keys) > 0 {
			req.context = map[string][]string{"dynamodb:LeadingKeys": c.keys}
		}
		reqs = append(reqs, req)
		if c.action == "dynamodb:PutItem" && strings.HasPrefix(c.keys[0], "AUDIT#") {
			auditPuts = append(auditPuts, c.cond)
		}
	}
	return reqs, auditPuts
}

func pk(item map[string]types.AttributeValue) string {
	s, _ := item["PK"].(*types.AttributeValueMemberS)
	if s == nil {
		return "<no PK>"
	}
	return s.Value
}

func (r *dynamoRecorder) GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	r.note("GetItem", "", pk(in.Key))
	return r.API.GetItem(ctx, in, opts...)
}

func (r *dynamoRecorder) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	var keys []string
	for _, ka := range in.RequestItems {
		for _, k := range ka.Keys {
			keys = append(keys, pk(k))
		}
	}
	r.note("BatchGetItem", "", keys...)
	return r.API.BatchGetItem(ctx, in, opts...)
}

var keyCondPK = regexp.MustCompile(`(?:^|\s)PK = (:\w+)`)

func (r *dynamoRecorder) Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	m := keyCondPK.FindStringSubmatch(aws.ToString(in.KeyConditionExpression))
	if m == nil {
		r.fail(fmt.Errorf("query %q: no PK = :value in the key condition; teach the recorder", aws.ToString(in.KeyConditionExpression)))
	} else {
		v, _ := in.ExpressionAttributeValues[m[1]].(*types.AttributeValueMemberS)
		if v == nil {
			r.fail(fmt.Errorf("query %q: %s is not a string value", aws.ToString(in.KeyConditionExpression), m[1]))
		} else {
			r.note("Query", "", v.Value)
		}
	}
	return r.API.Query(ctx, in, opts...)
}

func (r *dynamoRecorder) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	// IAM authorises each item of a transaction as its own action.
	for _, it := range in.TransactItems {
		switch {
		case it.Put != nil:
			r.note("PutItem", aws.ToString(it.Put.ConditionExpression), pk(it.Put.Item))
		case it.Update != nil:
			r.note("UpdateItem", "", pk(it.Update.Key))
		case it.Delete != nil:
			r.note("DeleteItem", "", pk(it.Delete.Key))
		case it.ConditionCheck != nil:
			r.note("ConditionCheckItem", "", pk(it.ConditionCheck.Key))
		}
	}
	return r.API.TransactWriteItems(ctx, in, opts...)
}

func (r *dynamoRecorder) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	var keys []string
	for _, reqs := range in.RequestItems {
		for _, w := range reqs {
			if w.PutRequest != nil {
				keys = append(keys, pk(w.PutRequest.Item))
			}
			if w.DeleteRequest != nil {
				keys = append(keys, pk(w.DeleteRequest.Key))
			}
		}
	}
	r.note("BatchWriteItem", "", keys...)
	return r.API.BatchWriteItem(ctx, in, opts...)
}

func (r *dynamoRecorder) DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	r.note("DescribeTable", "")
	return r.API.DescribeTable(ctx, in, opts...)
}

// queueRecorder notes a Feed's Subscribe, DeleteQueue (with the tags its
// CreateQueue gave the queue) and Unsubscribe calls.
type queueRecorder struct {
	tcssns.SNSAPI
	tcssns.SQSAPI
	realPrefix string // the emulator resources' prefix

	mu     sync.Mutex
	reqs   []request
	tags   map[string]map[string]string // queue URL → tags
	subbed int
}

func (r *queueRecorder) subscriptions() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.subbed
}

func (r *queueRecorder) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// templateARN renames an emulator ARN into the templates' account and
// prefix.
func (r *queueRecorder) templateARN(service, name string) string {
	name = strings.Replace(name, r.realPrefix+"-", prefix+"-", 1)
	return "arn:aws:" + service + ":" + serving + ":123456789012:" + name
}

func (r *queueRecorder) CreateQueue(ctx context.Context, in *awssqs.CreateQueueInput, opts ...func(*awssqs.Options)) (*awssqs.CreateQueueOutput, error) {
	out, err := r.SQSAPI.CreateQueue(ctx, in, opts...)
	if err == nil {
		r.mu.Lock()
		if r.tags == nil {
			r.tags = map[string]map[string]string{}
		}
		r.tags[aws.ToString(out.QueueUrl)] = in.Tags
		r.mu.Unlock()
	}
	return out, err
}

func (r *queueRecorder) Subscribe(ctx context.Context, in *awssns.SubscribeInput, opts ...func(*awssns.Options)) (*awssns.SubscribeOutput, error) {
	endpoint := aws.ToString(in.Endpoint)
	r.mu.Lock()
	r.reqs = append(r.reqs, request{
		action:   "sns:Subscribe",
		resource: r.templateARN("sns", names.Topic(serving)),
		context: map[string][]string{
			"sns:Protocol": {aws.ToString(in.Protocol)},
			"sns:Endpoint": {r.templateARN("sqs", endpoint[strings.LastIndexByte(endpoint, ':')+1:])},
		},
	})
	r.mu.Unlock()
	out, err := r.SNSAPI.Subscribe(ctx, in, opts...)
	if err == nil {
		r.mu.Lock()
		r.subbed++
		r.mu.Unlock()
	}
	return out, err
}

func (r *queueRecorder) DeleteQueue(ctx context.Context, in *awssqs.DeleteQueueInput, opts ...func(*awssqs.Options)) (*awssqs.DeleteQueueOutput, error) {
	url := aws.ToString(in.QueueUrl)
	r.mu.Lock()
	ctxKeys := map[string][]string{}
	for k, v := range r.tags[url] {
		ctxKeys["aws:ResourceTag/"+k] = []string{v}
	}
	r.reqs = append(r.reqs, request{action: "sqs:DeleteQueue", resource: r.templateARN("sqs", url[strings.LastIndexByte(url, '/')+1:]), context: ctxKeys})
	r.mu.Unlock()
	return r.SQSAPI.DeleteQueue(ctx, in, opts...)
}

// policies of the templates, by name.
func policies(homeT, regionT *cloudformation.Template, homeVars, regionVars map[string]string) map[string]policy {
	out := map[string]policy{}
	for _, p := range []struct {
		tpl  *cloudformation.Template
		vars map[string]string
	}{{homeT, homeVars}, {regionT, regionVars}} {
		for id, r := range p.tpl.Resources {
			if r.Type == "AWS::IAM::ManagedPolicy" {
				out[id] = policy{name: id, tpl: p.tpl, vars: p.vars}
			}
		}
	}
	return out
}

// checkLeastPrivilege returns what is wrong with the templates' conditions
// given what the code does: a call the code makes that its role's policy
// does not allow, or a call a role must not make that its policy allows.
func checkLeastPrivilege(t *testing.T, homeT, regionT *cloudformation.Template, homeVars, regionVars map[string]string, got calls) []string {
	t.Helper()
	ps := policies(homeT, regionT, homeVars, regionVars)
	var problems []string
	expect := func(p string, req request, want decision) {
		if d := ps[p].decide(t, req); d != want {
			problems = append(problems, fmt.Sprintf("%s: %v is %s, want %s", p, req, d, want))
		}
	}

	// Each role may do what its code does.
	for _, req := range got.catalog {
		expect("CatalogPolicy", req, allowed)
	}
	for _, req := range got.publisher {
		expect("PublisherPolicy", req, allowed)
	}
	for _, req := range got.reconciler {
		expect("ReconcilerPolicy", req, allowed)
	}
	// The reconciler resyncs: it never deletes or rewrites an audit record,
	// nor removes an outbox entry; its leases are the group reconcile's.
	for _, req := range got.reconciler {
		for _, k := range req.context["dynamodb:LeadingKeys"] {
			if strings.HasPrefix(k, "AUDIT#") {
				expect("ReconcilerPolicy", request{action: "dynamodb:UpdateItem", resource: catalogTableARN, context: req.context}, denied)
			}
			if strings.HasPrefix(k, "OUTBOX#") {
				expect("ReconcilerPolicy", request{action: "dynamodb:DeleteItem", resource: catalogTableARN, context: req.context}, denied)
			}
		}
	}
	firstLeases := "arn:aws:dynamodb:" + serving + ":123456789012:table/" + names.LeaseTable(serving)
	expect("ReconcilerPolicy", request{action: "dynamodb:UpdateItem", resource: firstLeases, context: map[string][]string{"dynamodb:LeadingKeys": {"reconcile"}}}, allowed)
	expect("ReconcilerPolicy", request{action: "dynamodb:UpdateItem", resource: firstLeases, context: map[string][]string{"dynamodb:LeadingKeys": {"apply-" + serving}}}, notPermitted)
	expect("ReconcilerPolicy", request{action: "dynamodb:Scan", resource: "arn:aws:dynamodb:" + serving + ":123456789012:table/" + names.ReplicaTable(serving)}, allowed)
	expect("ReconcilerPolicy", request{action: "dynamodb:PutItem", resource: "arn:aws:dynamodb:" + serving + ":123456789012:table/" + names.ReplicaTable(serving)}, notPermitted)

	// The node registry (home region): a node heartbeats and removes items
	// keyed by its own region (dynamonodes: hash key region), never
	// another region's; the catalog only scans it.
	nodesARN := "arn:aws:dynamodb:" + home + ":123456789012:table/" + dynamonodes.TableName(names.Base())
	own, other := map[string][]string{"dynamodb:LeadingKeys": {serving}}, map[string][]string{"dynamodb:LeadingKeys": {home}}
	expect("NodePolicy", request{action: "dynamodb:PutItem", resource: nodesARN, context: own}, allowed)
	expect("NodePolicy", request{action: "dynamodb:DeleteItem", resource: nodesARN, context: own}, allowed)
	expect("NodePolicy", request{action: "dynamodb:PutItem", resource: nodesARN, context: other}, notPermitted)
	expect("NodePolicy", request{action: "dynamodb:DeleteItem", resource: nodesARN, context: other}, notPermitted)
	expect("NodePolicy", request{action: "dynamodb:Scan", resource: nodesARN}, notPermitted)
	expect("CatalogPolicy", request{action: "dynamodb:Scan", resource: nodesARN}, allowed)
	expect("CatalogPolicy", request{action: "dynamodb:PutItem", resource: nodesARN, context: own}, notPermitted)

	// A publisher never deletes a lease, nor touches the appliers' leases.
	expect("PublisherPolicy", request{action: "dynamodb:DeleteItem", resource: publishLeaseTableARN}, notPermitted)
	expect("PublisherPolicy", request{action: "dynamodb:UpdateItem", resource: "arn:aws:dynamodb:" + serving + ":123456789012:table/" + names.LeaseTable(serving)}, notPermitted)
	for _, req := range got.node {
		expect("NodePolicy", req, allowed)
	}

	// The publisher touches only the outbox: none of the catalog's item
	// reads or writes outside it are allowed to it.
	var outsideOutbox int
	for _, req := range got.catalog {
		keys := req.context["dynamodb:LeadingKeys"]
		if len(keys) == 0 || !slices.ContainsFunc(keys, func(k string) bool { return !slices.Contains(outboxKeys(got), k) }) {
			continue
		}
		outsideOutbox++
		if d := ps["PublisherPolicy"].decide(t, req); d == allowed {
			problems = append(problems, fmt.Sprintf("PublisherPolicy: %v (not the outbox) is allowed", req))
		}
		// Nor a batch delete of those items, the publisher's one write.
		del := request{action: "dynamodb:BatchWriteItem", resource: req.resource, context: req.context}
		if d := ps["PublisherPolicy"].decide(t, del); d == allowed {
			problems = append(problems, fmt.Sprintf("PublisherPolicy: %v is allowed", del))
		}
	}
	if outsideOutbox == 0 {
		problems = append(problems, "the catalog made no calls outside the outbox partition; the recording is broken")
	}

	// The partitions the policies' conditions were written for. A new one
	// (say, audit records of resyncs kept apart) needs a decision: is it
	// audit, to be covered by AuditAppendOnly, or the outbox?
	known := []string{"TENANTS#*", "HOST#*", "AUDIT#*", "OUTBOX#*", "META"}
	for _, req := range slices.Concat(got.catalog, got.reconciler) {
		for _, k := range req.context["dynamodb:LeadingKeys"] {
			if !slices.ContainsFunc(known, func(p string) bool { return glob(p, k) }) {
				problems = append(problems, fmt.Sprintf("the catalog touches partition %q, which the IAM conditions do not know (%v): decide whether AuditAppendOnly or the publisher's outbox condition must cover it, then add it here", k, known))
			}
		}
	}

	// Audit items are append-only for every role: the catalog and the
	// reconciler (whose resyncs are audited, as tcsctl repair's are) create
	// them (with a put conditioned on their absence), nobody updates or
	// deletes them, and no other role creates them.
	if len(got.auditPuts) == 0 {
		problems = append(problems, "the catalog wrote no audit item under the AUDIT# prefix: has the audit key shape changed? the AuditAppendOnly statements must follow it")
	}
	for _, cond := range got.auditPuts {
		if !strings.Contains(cond, "attribute_not_exists") {
			problems = append(problems, fmt.Sprintf("the catalog puts an audit item with condition %q: it could overwrite one", cond))
		}
	}
	var auditKey string
	for _, req := range got.catalog {
		if req.action == "dynamodb:PutItem" && strings.HasPrefix(req.context["dynamodb:LeadingKeys"][0], "AUDIT#") {
			auditKey = req.context["dynamodb:LeadingKeys"][0]
			break
		}
	}
	if auditKey != "" {
		audit := map[string][]string{"dynamodb:LeadingKeys": {auditKey}}
		mixed := map[string][]string{"dynamodb:LeadingKeys": {"OUTBOX#0", auditKey}}
		for name := range ps {
			for _, a := range []string{"UpdateItem", "DeleteItem", "BatchWriteItem", "PartiQLUpdate", "PartiQLDelete"} {
				expect(name, request{action: "dynamodb:" + a, resource: catalogTableARN, context: audit}, denied)
			}
			expect(name, request{action: "dynamodb:BatchWriteItem", resource: catalogTableARN, context: mixed}, denied)
			if name != "CatalogPolicy" && name != "ReconcilerPolicy" {
				expect(name, request{action: "dynamodb:PutItem", resource: catalogTableARN, context: audit}, denied)
				expect(name, request{action: "dynamodb:PartiQLInsert", resource: catalogTableARN, context: audit}, denied)
			}
		}
	}

	// A node subscribes only its region's queues over SQS, and deletes only
	// its region's invalidation queues.
	queue := "arn:aws:sqs:" + serving + ":123456789012:" + tcssns.QueueNamePrefix(prefix, serving) + "other-node-0123abcd"
	topic := "arn:aws:sns:" + serving + ":123456789012:" + names.Topic(serving)
	sub := func(protocol, endpoint string) request {
		return request{action: "sns:Subscribe", resource: topic, context: map[string][]string{"sns:Protocol": {protocol}, "sns:Endpoint": {endpoint}}}
	}
	expect("NodePolicy", sub("sqs", queue), allowed)
	expect("NodePolicy", sub("https", "https://attacker.example/collect"), notPermitted)
	expect("NodePolicy", sub("http", queue), notPermitted)
	expect("NodePolicy", sub("email", "someone@example.com"), notPermitted)
	expect("NodePolicy", sub("sqs", "arn:aws:sqs:"+serving+":999999999999:"+tcssns.QueueNamePrefix(prefix, serving)+"x"), notPermitted)
	expect("NodePolicy", sub("sqs", "arn:aws:sqs:"+serving+":123456789012:"+tcssns.QueueNamePrefix(prefix, home)+"x"), notPermitted)
	var nodeDeletes int
	for _, req := range got.node {
		if req.action != "sqs:DeleteQueue" {
			continue
		}
		nodeDeletes++
		// The same queue without the node's tags, or tagged for another
		// region, is not the node's to delete.
		for _, drop := range []string{"aws:ResourceTag/" + tcssns.TagRole, "aws:ResourceTag/" + tcssns.TagRegion} {
			other := request{action: req.action, resource: req.resource, context: map[string][]string{}}
			for k, v := range req.context {
				if k != drop {
					other.context[k] = v
				}
			}
			expect("NodePolicy", other, notPermitted)
		}
		other := request{action: req.action, resource: req.resource, context: map[string][]string{}}
		for k, v := range req.context {
			other.context[k] = v
		}
		other.context["aws:ResourceTag/"+tcssns.TagRegion] = []string{home}
		expect("NodePolicy", other, notPermitted)
	}
	if nodeDeletes < 2 {
		problems = append(problems, fmt.Sprintf("the nodes deleted %d queues, want their own at a clean stop and a crashed node's in a sweep; the recording is broken", nodeDeletes))
	}
	return problems
}

// outboxKeys are the partition keys the publisher's calls touched.
func outboxKeys(got calls) []string {
	var keys []string
	for _, req := range got.publisher {
		for _, k := range req.context["dynamodb:LeadingKeys"] {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

func TestLeastPrivilegeMatchesCode(t *testing.T) {
	got := record(t)
	homeT, regionT, homeVars, regionVars := templates(t)
	for _, p := range checkLeastPrivilege(t, homeT, regionT, homeVars, regionVars, got) {
		t.Error(p)
	}
	t.Logf("checked %d catalog, %d publisher and %d node calls; the publisher touched partitions %v",
		len(got.catalog), len(got.publisher), len(got.node), outboxKeys(got))
}

// TestDriftCatchesWeakenedPolicies shows that the drift checks fail when a
// condition, a deny statement or the encryption goes missing.
func TestDriftCatchesWeakenedPolicies(t *testing.T) {
	got := record(t)
	for name, weaken := range map[string]func(t *testing.T, homeT, regionT *cloudformation.Template){
		"publisher outbox condition dropped": func(t *testing.T, homeT, _ *cloudformation.Template) {
			delete(statement(t, homeT, "PublisherPolicy", "Outbox"), "Condition")
		},
		"catalog audit deny dropped": func(t *testing.T, homeT, _ *cloudformation.Template) {
			dropStatement(t, homeT, "CatalogPolicy", "AuditAppendOnly")
		},
		"node audit deny dropped": func(t *testing.T, _, regionT *cloudformation.Template) {
			dropStatement(t, regionT, "NodePolicy", "AuditAppendOnly")
		},
		"publisher may put audit items": func(t *testing.T, homeT, _ *cloudformation.Template) {
			st := statement(t, homeT, "PublisherPolicy", "AuditAppendOnly")
			st["Action"] = slices.DeleteFunc(st["Action"].([]any), func(a any) bool { return a == "dynamodb:PutItem" })
		},
		"subscribe protocol condition dropped": func(t *testing.T, _, regionT *cloudformation.Template) {
			delete(statement(t, regionT, "NodePolicy", "Subscribe")["Condition"].(map[string]any), "StringEquals")
		},
		"subscribe endpoint condition dropped": func(t *testing.T, _, regionT *cloudformation.Template) {
			delete(statement(t, regionT, "NodePolicy", "Subscribe")["Condition"].(map[string]any), "StringLike")
		},
		"node registry region condition dropped": func(t *testing.T, _, regionT *cloudformation.Template) {
			delete(statement(t, regionT, "NodePolicy", "NodeRegistry"), "Condition")
		},
		"queue deletion tag condition dropped": func(t *testing.T, _, regionT *cloudformation.Template) {
			delete(statement(t, regionT, "NodePolicy", "DeleteQueue"), "Condition")
		},
		"topic unencrypted": func(t *testing.T, _, regionT *cloudformation.Template) {
			delete(regionT.Resources["InvalidationTopic"].Properties, "KmsMasterKeyId")
		},
		"reconciler audit deny dropped": func(t *testing.T, homeT, _ *cloudformation.Template) {
			dropStatement(t, homeT, "ReconcilerPolicy", "AuditAppendOnly")
		},
		"reconciler leases of any group": func(t *testing.T, homeT, _ *cloudformation.Template) {
			delete(statement(t, homeT, "ReconcilerPolicy", "Leases"), "Condition")
		},
		"stream unencrypted": func(t *testing.T, homeT, _ *cloudformation.Template) {
			delete(homeT.Resources["ChangeStream"].Properties, "StreamEncryption")
		},
		"applier cannot use the topic key": func(t *testing.T, _, regionT *cloudformation.Template) {
			dropStatement(t, regionT, "ApplierPolicy", "TopicEncryption")
		},
	} {
		t.Run(name, func(t *testing.T) {
			homeT, regionT, homeVars, regionVars := templates(t)
			if len(checkLeastPrivilege(t, homeT, regionT, homeVars, regionVars, got))+len(checkEncryption(t, homeT, regionT, homeVars, regionVars)) != 0 {
				t.Fatal("the committed templates fail the checks")
			}
			weaken(t, homeT, regionT)
			problems := append(checkLeastPrivilege(t, homeT, regionT, homeVars, regionVars, got), checkEncryption(t, homeT, regionT, homeVars, regionVars)...)
			if len(problems) == 0 {
				t.Fatal("the checks pass on the weakened templates")
			}
			t.Logf("caught: %s", problems[0])
		})
	}
}

func dropStatement(t *testing.T, tpl *cloudformation.Template, policy, sid string) {
	t.Helper()
	statement(t, tpl, policy, sid) // fails if absent
	doc := tpl.Resources[policy].Properties["PolicyDocument"].(map[string]any)
	doc["Statement"] = slices.DeleteFunc(doc["Statement"].([]any), func(st any) bool {
		m, _ := st.(map[string]any)
		return m["Sid"] == sid
	})
}
