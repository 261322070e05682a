// Package backend picks and opens the storage and messaging backends of the
// TCS binaries from one configuration: the embedded family (bbolt files in
// a data directory; one process per file) or the AWS family (DynamoDB,
// Kinesis, SNS/SQS). Every binary registers the same flags, so one
// environment configures them all:
//
//	TCS_BACKEND          embedded (default) or aws
//	TCS_DATA_DIR         embedded: the data directory (default ./data)
//	TCS_AWS_PREFIX       aws: prefix of every resource name (default tcs)
//	TCS_AWS_HOME_REGION  aws: region of the catalog table and the stream
//	                     (default AWS_REGION)
//	TCS_POLL_INTERVAL    aws: Kinesis GetRecords poll interval (default 100ms)
//	TCS_AWS_TIMEOUT      aws: deadline of each SDK call, retries included
//	                     (default 10s; an SQS long poll gets its wait on top)
//	TCS_AWS_CONNECT_TIMEOUT  aws: TCP connect and TLS handshake (default 2s)
//	TCS_AWS_HEADER_TIMEOUT   aws: one attempt, from sending to the response
//	                     headers (default 5s; the retryer tries again within
//	                     TCS_AWS_TIMEOUT)
//
// AWS credentials, regions and endpoints come from the SDK's standard chain
// (AWS_PROFILE, AWS_ACCESS_KEY_ID…, AWS_REGION, AWS_ENDPOINT_URL_DYNAMODB,
// AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL_SNS, AWS_ENDPOINT_URL_SQS).
// Serving regions are AWS regions: a region's replica table, lease table and
// topic are reached in that region. Resource names follow internal/awsnames;
// `tcsctl infra apply` creates them.
//
// This package opens what a lookup node needs (the replica, the
// invalidation feed); the catalog and the stream are opened by its
// subpackages catalogs and streams, so that a binary links only the stores
// it uses (cmd/tcs links no catalog store, stream or provisioning code).
package backend

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/internal/awsclient"
	"github.com/tcs-dev/tcs/internal/awsnames"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	replicadynamo "github.com/tcs-dev/tcs/tcs/dynamo"
	tcssns "github.com/tcs-dev/tcs/tcs/sns"
)

// The backend families.
const (
	Embedded = "embedded"
	AWS      = "aws"
)

// Config selects and configures the backends. Register fills it from flags
// and environment.
type Config struct {
	Backend string
	// DataDir is the embedded backends' data directory.
	DataDir string
	// Names derives the AWS resource names.
	Names awsnames.Names
	// HomeRegion is the AWS region of the catalog table and the stream.
	HomeRegion string
	// PollInterval is the Kinesis poll interval.
	PollInterval time.Duration
	// Timeouts bound every AWS SDK call (internal/awsclient).
	Timeouts awsclient.Timeouts

	// LoadAWS loads the SDK configuration of a region; nil means the SDK's
	// default chain (config.LoadDefaultConfig). Tests replace it.
	LoadAWS func(ctx context.Context, region string) (aws.Config, error)

	// envErr is a malformed environment default, reported by Validate.
	envErr error

	mu  sync.Mutex
	aws map[string]aws.Config
}

// DefaultPollInterval is --poll-interval's default: safe on real Kinesis for
// up to five regions (5 GetRecords per second per shard, shared by every
// region's appliers; the KCL polls every second too). A shard with a
// backlog is read again at once, whatever the interval. The emulator setups
// (make run-aws-local, docker-compose, the chaos suite) set 100ms.
const DefaultPollInterval = time.Second

// Register adds the backend flags to fs, with defaults from getenv, and
// returns the Config they fill.
func Register(fs *flag.FlagSet, getenv func(string) string) *Config {
	c := &Config{}
	fs.StringVar(&c.Backend, "backend", cmdutil.EnvOr(getenv, "TCS_BACKEND", Embedded), "storage and messaging backends: embedded or aws (env TCS_BACKEND)")
	fs.StringVar(&c.DataDir, "data", cmdutil.EnvOr(getenv, "TCS_DATA_DIR", "data"), "embedded: data directory (env TCS_DATA_DIR)")
	fs.StringVar(&c.Names.Prefix, "aws-prefix", cmdutil.EnvOr(getenv, "TCS_AWS_PREFIX", awsnames.DefaultPrefix), "aws: prefix of every resource name (env TCS_AWS_PREFIX)")
	fs.StringVar(&c.HomeRegion, "aws-home-region", cmdutil.EnvOr(getenv, "TCS_AWS_HOME_REGION", getenv("AWS_REGION")), "aws: region of the catalog table and the change stream (env TCS_AWS_HOME_REGION, default AWS_REGION)")
	var errs []error
	duration := func(key string, def time.Duration) time.Duration {
		return cmdutil.EnvDuration(getenv, key, def, &errs)
	}
	fs.DurationVar(&c.PollInterval, "poll-interval", duration("TCS_POLL_INTERVAL", DefaultPollInterval), "aws: wait between Kinesis GetRecords of a shard that had nothing more (env TCS_POLL_INTERVAL); Kinesis allows 5 reads per second per shard, shared by every region's appliers, so keep it at least 200ms × the number of regions (the default suits up to 5); the emulator setups use 100ms")
	fs.DurationVar(&c.Timeouts.Operation, "aws-timeout", duration("TCS_AWS_TIMEOUT", awsclient.DefaultOperation), "aws: deadline of each AWS SDK call, retries included (env TCS_AWS_TIMEOUT); an SQS long poll gets its wait on top")
	fs.DurationVar(&c.Timeouts.Connect, "aws-connect-timeout", duration("TCS_AWS_CONNECT_TIMEOUT", awsclient.DefaultConnect), "aws: limit on a TCP connect, and on a TLS handshake, to an AWS endpoint (env TCS_AWS_CONNECT_TIMEOUT)")
	fs.DurationVar(&c.Timeouts.ResponseHeader, "aws-header-timeout", duration("TCS_AWS_HEADER_TIMEOUT", awsclient.DefaultResponseHeader), "aws: limit on one attempt of an AWS SDK call, from sending it to the response headers (env TCS_AWS_HEADER_TIMEOUT); the SDK retries within --aws-timeout")
	if len(errs) > 0 {
		c.envErr = errs[0]
	}
	return c
}

// Validate reports a configuration that cannot work, naming the setting.
func (c *Config) Validate() error {
	if c.envErr != nil {
		return c.envErr
	}
	switch c.Backend {
	case Embedded:
		if c.DataDir == "" {
			return errors.New("--data (TCS_DATA_DIR) is empty")
		}
	case AWS:
		if c.HomeRegion == "" {
			return errors.New("--backend aws needs a home region: set AWS_REGION or --aws-home-region (TCS_AWS_HOME_REGION)")
		}
		if p := c.Names.Prefix; p == "" || strings.Trim(p, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" || len(p) > 32 {
			return fmt.Errorf("--aws-prefix %q: want 1 to 32 lower-case letters, digits and dashes", p)
		}
		if c.PollInterval <= 0 {
			return fmt.Errorf("--poll-interval %v: want a positive duration", c.PollInterval)
		}
		for _, f := range []struct {
			name string
			d    time.Duration
		}{{"--aws-timeout", c.Timeouts.Operation}, {"--aws-connect-timeout", c.Timeouts.Connect}, {"--aws-header-timeout", c.Timeouts.ResponseHeader}} {
			if f.d <= 0 {
				return fmt.Errorf("%s %v: want a positive duration", f.name, f.d)
			}
		}
		if c.Timeouts.ResponseHeader > c.Timeouts.Operation {
			return fmt.Errorf("--aws-header-timeout %v exceeds --aws-timeout %v: no attempt could use it", c.Timeouts.ResponseHeader, c.Timeouts.Operation)
		}
	default:
		return fmt.Errorf("--backend %q: want %s or %s", c.Backend, Embedded, AWS)
	}
	return nil
}

// IsAWS reports whether the AWS family is selected.
func (c *Config) IsAWS() bool { return c.Backend == AWS }

// Data is the embedded data directory, created if needed.
func (c *Config) Data() (cmdutil.Data, error) {
	d := cmdutil.Data(c.DataDir)
	return d, d.Ensure()
}

// AWSConfig returns the SDK configuration for region (loaded once), with
// the configured timeouts.
func (c *Config) AWSConfig(ctx context.Context, region string) (aws.Config, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cfg, ok := c.aws[region]; ok {
		return cfg, nil
	}
	load := c.LoadAWS
	if load == nil {
		load = func(ctx context.Context, region string) (aws.Config, error) {
			return awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region))
		}
	}
	cfg, err := load(ctx, region)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration for %s: %w", region, err)
	}
	t := c.Timeouts
	t.TLSHandshake = t.Connect
	t.Apply(&cfg)
	if c.aws == nil {
		c.aws = map[string]aws.Config{}
	}
	c.aws[region] = cfg
	return cfg, nil
}

// Clients returns the SDK clients of region that lookup nodes and appliers
// use (the stream's Kinesis client is package streams').
func (c *Config) Clients(ctx context.Context, region string) (*Clients, error) {
	cfg, err := c.AWSConfig(ctx, region)
	if err != nil {
		return nil, err
	}
	return &Clients{
		DynamoDB: awsclient.NewDynamoDB(cfg),
		SNS:      awssns.NewFromConfig(cfg),
		SQS:      awssqs.NewFromConfig(cfg),
	}, nil
}

// Clients are the SDK clients of one region.
type Clients struct {
	DynamoDB *dynamodb.Client
	SNS      *awssns.Client
	SQS      *awssqs.Client
}

// OpenReplica opens region's replica table.
func (c *Config) OpenReplica(ctx context.Context, region string) (tcs.Replica, error) {
	if !c.IsAWS() {
		data, err := c.Data()
		if err != nil {
			return nil, err
		}
		return boltreplica.Open(data.Replica(region), boltreplica.Options{})
	}
	cl, err := c.Clients(ctx, region)
	if err != nil {
		return nil, err
	}
	return replicadynamo.Open(ctx, replicadynamo.Config{Client: cl.DynamoDB, Table: c.Names.ReplicaTable(region)})
}

// Invalidation is what a region's invalidation broadcast needs.
type Invalidation struct {
	Region string
	// NodeID names a tcs node's queue; empty means the host name.
	NodeID     string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// OpenBroadcaster returns the broadcaster an applier of region invalidates
// lookup caches with. The embedded family has none across processes (nil:
// caches rely on their TTL); cmd/tcs-dev wires an in-process hub instead.
func (c *Config) OpenBroadcaster(ctx context.Context, o Invalidation) (tcs.Broadcaster, error) {
	if !c.IsAWS() {
		return nil, nil
	}
	cfg, err := c.snsConfig(ctx, o)
	if err != nil {
		return nil, err
	}
	return tcssns.OpenBroadcaster(ctx, cfg)
}

// OpenFeed returns the invalidation feed of a tcs node of region; nil for
// the embedded family (see OpenBroadcaster).
func (c *Config) OpenFeed(ctx context.Context, o Invalidation) (tcs.Feed, error) {
	if !c.IsAWS() {
		return nil, nil
	}
	cfg, err := c.snsConfig(ctx, o)
	if err != nil {
		return nil, err
	}
	return tcssns.OpenFeed(ctx, cfg)
}

func (c *Config) snsConfig(ctx context.Context, o Invalidation) (tcssns.Config, error) {
	cl, err := c.Clients(ctx, o.Region)
	if err != nil {
		return tcssns.Config{}, err
	}
	arn, err := tcssns.LookupTopic(ctx, cl.SNS, c.Names.Topic(o.Region))
	if err != nil {
		return tcssns.Config{}, err
	}
	node := o.NodeID
	if node == "" {
		host, _ := os.Hostname()
		node = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	return tcssns.Config{
		SNS: cl.SNS, SQS: cl.SQS, TopicARN: arn, Region: o.Region, Prefix: c.Names.Prefix, NodeID: node,
		Logger: o.Logger, Registerer: o.Registerer,
	}, nil
}
