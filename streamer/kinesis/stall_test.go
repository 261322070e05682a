package kinesis_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/streamer"
)

// The stall gauges: a shard's last read advances while it is polled, and
// stops while the handler hangs on a batch; its iterator age is in seconds.
func TestLastReadStopsWhileHandlerHangs(t *testing.T) {
	t.Parallel()
	_, cfg := newStream(t, 1)
	reg := prometheus.NewRegistry()
	cfg.Registerer, cfg.PollInterval = reg, 20*time.Millisecond
	s := open(t, cfg)
	lastRead := func() float64 {
		return metric(t, reg, "tcs_kinesis_last_read_timestamp_seconds", map[string]string{"group": "g"})
	}
	hang := make(chan struct{})
	var hung sync.Once
	entered := make(chan struct{})
	h := func(ctx context.Context, batch []streamer.Message) error {
		if string(batch[0].Data) == "hang" {
			hung.Do(func() { close(entered) })
			select {
			case <-hang:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	consume(t, t.Context(), s, "g", h)
	testwait.For(t, "a shard's first read", func() bool { return lastRead() > 0 })
	first := lastRead()
	testwait.For(t, "the idle shard's last read to advance", func() bool { return lastRead() > first })
	if err := s.Append(t.Context(), []streamer.Record{{PartitionKey: "k", Data: []byte("hang")}}); err != nil {
		t.Fatal(err)
	}
	<-entered
	during := lastRead()
	time.Sleep(300 * time.Millisecond) // 15 polls, were the shard polled
	if got := lastRead(); got != during {
		t.Errorf("last read advanced from %v to %v while the handler hung", during, got)
	}
	if age := metric(t, reg, "tcs_kinesis_iterator_age_seconds", map[string]string{"group": "g"}); age < 0 || age > 60 {
		t.Errorf("iterator age %v; want seconds (0 to 60)", age)
	}
	close(hang)
	testwait.For(t, "the last read to advance once the handler returns", func() bool { return lastRead() > during })
}
