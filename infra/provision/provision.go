// Package provision creates TCS's AWS resources through the SDK,
// idempotently: the source-of-truth table, change stream, the node registry and the
// publishers' lease table in the home region, and per serving region the replica table, the applier's lease
// table and the invalidation topic. It is `tcsctl infra apply`, and how the
// local emulators get their resources. Production deployments use the
// CloudFormation templates in infra/cloudformation, which declare the same
// resources plus the IAM policies. Apply gives the resources the same
// protection as the templates (KMS encryption of the stream and topics,
// point-in-time recovery, deletion protection), warning where an emulator
// cannot; this package's tests keep the two in step, IAM conditions
// included.
//
// Every name derives from one prefix (Names), which the binaries take as
// --aws-prefix.
package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/smithy-go"

	catalogdynamo "github.com/tcs-dev/tcs/catalog/dynamo"
	"github.com/tcs-dev/tcs/catalog/propagation/dynamonodes"
	"github.com/tcs-dev/tcs/internal/awsclient"
	"github.com/tcs-dev/tcs/internal/awsnames"
	"github.com/tcs-dev/tcs/internal/dynamotable"
	streamkinesis "github.com/tcs-dev/tcs/streamer/kinesis"
	replicadynamo "github.com/tcs-dev/tcs/tcs/dynamo"
	tcssns "github.com/tcs-dev/tcs/tcs/sns"
)

// DefaultPrefix is the resource name prefix when none is configured.
const DefaultPrefix = awsnames.DefaultPrefix

// Names derives every resource name from Prefix (internal/awsnames). The
// CloudFormation templates use the same scheme with their Prefix
// parameter.
type Names = awsnames.Names

// Clients reach the AWS APIs; a func field returns the client for a region.
type Clients struct {
	DynamoDB func(region string) *dynamodb.Client
	Kinesis  func(region string) *kinesis.Client
	SNS      func(region string) *awssns.Client
}

// NewClients returns Clients whose clients of a region are made from
// config(region). A config without timeouts gets awsclient's defaults, so
// that no call can hang on a frozen endpoint.
func NewClients(config func(region string) aws.Config) Clients {
	return Clients{
		DynamoDB: func(r string) *dynamodb.Client { return NewDynamoDB(config(r)) },
		Kinesis:  func(r string) *kinesis.Client { return kinesis.NewFromConfig(awsclient.WithDefaults(config(r))) },
		SNS:      func(r string) *awssns.Client { return awssns.NewFromConfig(awsclient.WithDefaults(config(r))) },
	}
}

// NewDynamoDB returns a DynamoDB client of cfg (awsclient.NewDynamoDB).
func NewDynamoDB(cfg aws.Config) *dynamodb.Client { return awsclient.NewDynamoDB(cfg) }

// Plan is what Apply creates.
type Plan struct {
	Names      Names
	HomeRegion string
	// Regions are the serving regions (TCS region names, which are AWS
	// region names).
	Regions []string
	// Shards is the change stream's shard count for a new stream; an
	// existing stream keeps its shards.
	Shards int
}

// Validate reports what is wrong with p.
func (p Plan) Validate() error {
	var errs []error
	if p.HomeRegion == "" {
		errs = append(errs, errors.New("home region is empty (set AWS_REGION or --home-region)"))
	}
	if len(p.Regions) == 0 {
		errs = append(errs, errors.New("no serving regions (--regions)"))
	}
	for _, r := range p.Regions {
		if !validRegion(r) {
			errs = append(errs, fmt.Errorf("region %q: want lower-case letters, digits and dashes, like eu-west-1", r))
		}
	}
	if dup := duplicate(p.Regions); dup != "" {
		errs = append(errs, fmt.Errorf("region %q is listed twice", dup))
	}
	if p.Shards < 1 || p.Shards > 500 {
		errs = append(errs, fmt.Errorf("shards %d: want 1 to 500", p.Shards))
	}
	return errors.Join(errs...)
}

// Resource is one resource of a Plan.
type Resource struct {
	Kind   string // "dynamodb table", "kinesis stream", "sns topic"
	Name   string
	Region string
	// ensure creates the resource unless it exists and waits until it is
	// ready.
	ensure func(ctx context.Context, c Clients, out io.Writer) error
}

func (r Resource) String() string { return r.Kind + " " + r.Name + " (" + r.Region + ")" }

// Resources lists what Apply creates, in order.
func (p Plan) Resources() []Resource {
	home := p.HomeRegion
	catalogTable := catalogdynamo.TableInput(p.Names.CatalogTable())
	catalogTable.DeletionProtectionEnabled = aws.Bool(true)
	table := func(name, region string, in *dynamodb.CreateTableInput, pitr bool) Resource {
		return Resource{Kind: "dynamodb table", Name: name, Region: region, ensure: func(ctx context.Context, c Clients, out io.Writer) error {
			return createTable(ctx, c.DynamoDB(region), in, pitr, out)
		}}
	}
	rs := []Resource{
		table(p.Names.CatalogTable(), home, catalogTable, true),
		{Kind: "kinesis stream", Name: p.Names.Stream(), Region: home, ensure: func(ctx context.Context, c Clients, out io.Writer) error {
			if err := streamkinesis.CreateStream(ctx, c.Kinesis(home), p.Names.Stream(), p.Shards); err != nil {
				return err
			}
			return encryptStream(ctx, c.Kinesis(home), p.Names.Stream(), out)
		}},
		table(p.Names.PublishLeaseTable(), home, streamkinesis.LeaseTableInput(p.Names.PublishLeaseTable()), false),
		table(p.Names.WorkLeaseTable(), home, streamkinesis.LeaseTableInput(p.Names.WorkLeaseTable()), false),
		{Kind: "dynamodb table", Name: dynamonodes.TableName(p.Names.Base()), Region: home, ensure: func(ctx context.Context, c Clients, out io.Writer) error {
			name := dynamonodes.TableName(p.Names.Base())
			if err := createTable(ctx, c.DynamoDB(home), dynamonodes.TableInput(name), false, out); err != nil {
				return err
			}
			return dynamonodes.EnableTTL(ctx, c.DynamoDB(home), name)
		}},
	}
	for _, r := range p.Regions {
		topic := p.Names.Topic(r)
		rs = append(rs,
			table(p.Names.ReplicaTable(r), r, replicadynamo.TableInput(p.Names.ReplicaTable(r)), true),
			table(p.Names.LeaseTable(r), r, streamkinesis.LeaseTableInput(p.Names.LeaseTable(r)), false),
			Resource{Kind: "sns topic", Name: topic, Region: r, ensure: func(ctx context.Context, c Clients, out io.Writer) error {
				arn, err := tcssns.CreateTopic(ctx, c.SNS(r), topic)
				if err != nil {
					return err
				}
				return encryptTopic(ctx, c.SNS(r), arn, out)
			}})
	}
	return rs
}

// Apply creates every resource of p that does not exist yet and waits until
// each is ready; running it again changes nothing. Existing resources are
// left as they are (a table with another key schema is an error), except
// that encryption is added where missing. The catalog table gets deletion
// protection, it and the replica tables point-in-time recovery; the stream
// is encrypted with StreamKMSKey and each topic with TopicKMSKey, as in the
// templates (tables are always encrypted at rest by DynamoDB). An endpoint
// that does not support point-in-time recovery or encryption (the
// emulators) gets a warning line, not an error. It writes one line per
// resource to out.
func Apply(ctx context.Context, p Plan, c Clients, out io.Writer) error {
	if err := p.Validate(); err != nil {
		return err
	}
	for _, r := range p.Resources() {
		start := time.Now()
		if err := r.ensure(ctx, c, out); err != nil {
			return fmt.Errorf("%s: %w", r, err)
		}
		fmt.Fprintf(out, "ok  %-60s %v\n", r, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// DynamoDBAPI is what createTable needs; *dynamodb.Client implements it.
type DynamoDBAPI interface {
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	UpdateContinuousBackups(ctx context.Context, in *dynamodb.UpdateContinuousBackupsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateContinuousBackupsOutput, error)
}

// createTable creates the table in (existing tables are left alone, but
// must have the same key schema), waits until it is active, and turns on
// point-in-time recovery if pitr. An endpoint that does not know PITR (the
// emulators) gets a warning on out, not an error.
func createTable(ctx context.Context, db DynamoDBAPI, in *dynamodb.CreateTableInput, pitr bool, out io.Writer) error {
	name := aws.ToString(in.TableName)
	desc, err := dynamotable.Create(ctx, db, in)
	if err != nil {
		return err
	}
	if !sameKeys(desc.KeySchema, in.KeySchema) {
		return fmt.Errorf("table %s exists with another key schema (%s, want %s): it was not made for TCS; delete it or choose another --aws-prefix",
			name, keys(desc.KeySchema), keys(in.KeySchema))
	}
	if !pitr {
		return nil
	}
	_, err = db.UpdateContinuousBackups(ctx, &dynamodb.UpdateContinuousBackupsInput{
		TableName:                        in.TableName,
		PointInTimeRecoverySpecification: &types.PointInTimeRecoverySpecification{PointInTimeRecoveryEnabled: aws.Bool(true)},
	})
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "UnknownOperationException" {
		fmt.Fprintf(out, "    warning: %s: the endpoint does not support point-in-time recovery (an emulator?); not enabled\n", name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("enable point-in-time recovery: %w", err)
	}
	return nil
}

func sameKeys(a, b []types.KeySchemaElement) bool {
	return keys(a) == keys(b)
}

func keys(ks []types.KeySchemaElement) string {
	var s []string
	for _, k := range ks {
		s = append(s, aws.ToString(k.AttributeName)+" "+string(k.KeyType))
	}
	return strings.Join(s, ", ")
}

// WaitForEndpoints waits until every endpoint URL accepts TCP connections,
// or timeout passes (the emulators of docker-compose start in any order).
func WaitForEndpoints(ctx context.Context, timeout time.Duration, endpoints ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, e := range endpoints {
		u, err := url.Parse(e)
		if err != nil || u.Host == "" {
			return fmt.Errorf("endpoint %q: not a URL", e)
		}
		host := u.Host
		if u.Port() == "" {
			port := "80"
			if u.Scheme == "https" {
				port = "443"
			}
			host = net.JoinHostPort(u.Hostname(), port)
		}
		var d net.Dialer
		for {
			conn, err := d.DialContext(ctx, "tcp", host)
			if err == nil {
				conn.Close()
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("endpoint %s did not accept connections within %v: %w", e, timeout, err)
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return nil
}

func validRegion(r string) bool {
	if r == "" || len(r) > 32 || r[0] == '-' || r[len(r)-1] == '-' {
		return false
	}
	for _, c := range r {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func duplicate(xs []string) string {
	s := slices.Clone(xs)
	slices.Sort(s)
	for i := 1; i < len(s); i++ {
		if s[i] == s[i-1] {
			return s[i]
		}
	}
	return ""
}
