// Package streams opens the ordered change stream of the backend family a
// backend.Config selects: the bbolt log in the data directory, or the
// Kinesis stream in the home region (with its consumer groups' lease
// tables).
package streams

import (
	"context"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/boltlog"
	streamkinesis "github.com/tcs-dev/tcs/streamer/kinesis"
)

// Options are what a stream's consumer side needs.
type Options struct {
	// Region whose lease table the consumer groups use (streamer apply);
	// empty for a stream that is only appended to (streamer publish).
	Region string
	// Owner names this worker among the consumers of a group; empty means
	// host name, process id and a random suffix.
	Owner      string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// DisablePacking is the Kinesis stream's Config.DisablePacking.
	DisablePacking bool
}

// Open opens the ordered change stream.
func Open(ctx context.Context, c *backend.Config, o Options) (streamer.Stream, error) {
	if !c.IsAWS() {
		data, err := c.Data()
		if err != nil {
			return nil, err
		}
		return boltlog.Open(data.Stream(), boltlog.Options{})
	}
	home, err := c.AWSConfig(ctx, c.HomeRegion)
	if err != nil {
		return nil, err
	}
	cfg := streamkinesis.Config{
		Kinesis:        kinesis.NewFromConfig(home),
		Stream:         c.Names.Stream(),
		Owner:          o.Owner,
		PollInterval:   c.PollInterval,
		DisablePacking: o.DisablePacking,
		Logger:         o.Logger,
		Registerer:     o.Registerer,
	}
	if o.Region != "" {
		local, err := c.Clients(ctx, o.Region)
		if err != nil {
			return nil, err
		}
		cfg.DynamoDB, cfg.LeaseTable = local.DynamoDB, c.Names.LeaseTable(o.Region)
	}
	return streamkinesis.Open(ctx, cfg)
}
