package main

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/cmd/internal/obstest"
	"github.com/tcs-dev/tcs/internal/testwait"
)

// TestReconcilerRuns: tcs-dev runs the reconciler over every region, its
// metrics on the metrics port with component="reconcile", and a healthy
// system gives it nothing to resync.
func TestReconcilerRuns(t *testing.T) {
	t.Parallel()
	s := start(t, "--reconcile-interval", "50ms", "--reconcile-settle", "500ms")
	s.eventually(t, "acme.example.com", atVersion("acme", 1))
	// sum adds the values of name's series that carry labels.
	sum := func(name string, labels map[string]string) (float64, bool) {
		_, body := obstest.Get(t, s.ep.Metrics, "/metrics")
		total, found := 0.0, false
	next:
		for _, line := range strings.Split(body, "\n") {
			m := sampleLine.FindStringSubmatch(line)
			if m == nil || m[1] != name {
				continue
			}
			for k, v := range labels {
				if !strings.Contains(m[2], k+`="`+v+`"`) {
					continue next
				}
			}
			v, err := strconv.ParseFloat(m[3], 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", line, err)
			}
			total += v
			found = true
		}
		return total, found
	}
	testwait.For(t, "three comparisons", func() bool {
		n, _ := sum("tcs_reconcile_cycles_total", map[string]string{"component": "reconcile", "outcome": "ok"})
		return n >= 3
	})
	for _, region := range []string{"us-east-1", "eu-west-1", "ap-southeast-2"} {
		labels := map[string]string{"component": "reconcile", "region": region}
		if n, ok := sum("tcs_reconcile_buckets_compared_total", labels); !ok || n < 3*4096 {
			t.Errorf("tcs_reconcile_buckets_compared_total%v = %v (present %v), want at least three comparisons of 4096 buckets", labels, n, ok)
		}
		if n, ok := sum("tcs_reconcile_resyncs_total", labels); !ok || n != 0 {
			t.Errorf("tcs_reconcile_resyncs_total%v = %v (present %v), want 0 on a healthy system", labels, n, ok)
		}
	}
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)

// TestReconcilerHealsAWS: on the AWS family (DynamoDB catalog and replicas,
// Kinesis with the reconciler's own consumer group), a tenant's items
// deleted from one region's replica table behind the pipeline's back are
// found and resynced back, and the other regions are left alone.
func TestReconcilerHealsAWS(t *testing.T) {
	s, names := startAWS(t, "--seed=false", "--reconcile-interval", "200ms", "--reconcile-settle", "1s")
	if code, _, body := s.rest(t, "POST", "/v1/tenants", adm, `{"id":"hooli","hostnames":["hooli.example.com"],"products":{"jira":{"state":"ACTIVE","users":5}}}`); code != 201 {
		t.Fatalf("create hooli: %d %s", code, body)
	}
	s.eventually(t, "hooli.example.com", atVersion("hooli", 1))
	cfg, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion("eu-west-1"))
	if err != nil {
		t.Fatal(err)
	}
	db := dynamodb.NewFromConfig(cfg)
	table := aws.String(names.ReplicaTable("eu-west-1"))
	item := func(pk string) bool {
		out, err := db.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: table, ConsistentRead: aws.Bool(true),
			Key: map[string]types.AttributeValue{"PK": &types.AttributeValueMemberS{Value: pk}}})
		if err != nil {
			t.Fatal(err)
		}
		return out.Item != nil
	}
	for _, pk := range []string{"T#hooli", "H#hooli.example.com"} {
		if _, err := db.DeleteItem(context.Background(), &dynamodb.DeleteItemInput{TableName: table,
			Key: map[string]types.AttributeValue{"PK": &types.AttributeValueMemberS{Value: pk}}}); err != nil {
			t.Fatal(err)
		}
		if item(pk) {
			t.Fatalf("%s still in %s after DeleteItem", pk, *table)
		}
	}
	testwait.Within(t, 30*time.Second, "hooli back in eu-west-1's replica table", func() bool {
		return item("T#hooli") && item("H#hooli.example.com")
	})
	sum := func(name string, labels map[string]string) float64 {
		_, body := obstest.Get(t, s.ep.Metrics, "/metrics")
		total := 0.0
	next:
		for _, line := range strings.Split(body, "\n") {
			m := sampleLine.FindStringSubmatch(line)
			if m == nil || m[1] != name {
				continue
			}
			for k, v := range labels {
				if !strings.Contains(m[2], k+`="`+v+`"`) {
					continue next
				}
			}
			v, _ := strconv.ParseFloat(m[3], 64)
			total += v
		}
		return total
	}
	if n := sum("tcs_reconcile_resyncs_total", map[string]string{"region": "eu-west-1"}); n < 1 {
		t.Errorf("tcs_reconcile_resyncs_total{region=eu-west-1} = %v, want at least 1", n)
	}
	for _, region := range []string{"us-east-1", "ap-southeast-2"} {
		if n := sum("tcs_reconcile_resyncs_total", map[string]string{"region": region}); n != 0 {
			t.Errorf("tcs_reconcile_resyncs_total{region=%s} = %v, want 0: it did not drift", region, n)
		}
	}
}
