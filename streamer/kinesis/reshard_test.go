package kinesis_test

import (
	"context"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/kinesis"
)

// TestReshard appends rounds of one record per key without pause while the
// stream is split and then the two halves merged back, with two workers
// consuming. Records of a key land in the parent, then a child, then the
// merged shard: each key's records must all arrive, once, in order, which
// needs every child consumed only after its parents were read to their end.
func TestReshard(t *testing.T) {
	t.Parallel()
	const group = "reshard"
	c, cfg := newStream(t, 2)
	cfg.LeaseDuration = 2 * time.Second
	cfg.PollInterval = 50 * time.Millisecond
	cfgA, cfgB := cfg, cfg
	cfgA.Owner, cfgB.Owner = "worker-a", "worker-b"
	a, b := open(t, cfgA), open(t, cfgB)
	log := newLog()
	consume(t, t.Context(), a, group, log.handler("a"))
	consume(t, t.Context(), b, group, log.handler("b"))

	ks := keys(30)
	var appended []streamer.Record
	round := 0
	appendRounds := func(n int) {
		t.Helper()
		rs := rounds(ks, round, n)
		for i := 0; i < len(rs); i += len(ks) {
			if err := a.Append(t.Context(), rs[i:i+len(ks)]); err != nil {
				t.Fatalf("Append: %v", err)
			}
		}
		appended = append(appended, rs...)
		round += n
	}
	// Rounds go on in the background while the stream reshards.
	during := func(reshard func()) {
		t.Helper()
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				appendRounds(1)
			}
		}()
		time.Sleep(200 * time.Millisecond)
		reshard()
		time.Sleep(200 * time.Millisecond)
		close(stop)
		<-done
	}

	appendRounds(3)
	parent := shard(t, c.kin, cfg.Stream, "shardId-000000000000")
	lo, _ := new(big.Int).SetString(aws.ToString(parent.HashKeyRange.StartingHashKey), 10)
	hi, _ := new(big.Int).SetString(aws.ToString(parent.HashKeyRange.EndingHashKey), 10)
	mid := new(big.Int).Rsh(new(big.Int).Add(lo, hi), 1)
	during(func() {
		_, err := c.kin.SplitShard(t.Context(), &awskinesis.SplitShardInput{
			StreamName: aws.String(cfg.Stream), ShardToSplit: parent.ShardId, NewStartingHashKey: aws.String(mid.String()),
		})
		if err != nil {
			t.Fatalf("SplitShard: %v", err)
		}
		waitActive(t, c.kin, cfg.Stream)
	})
	children := openShards(t, c.kin, cfg.Stream, func(s ktypes.Shard) bool { return aws.ToString(s.ParentShardId) == *parent.ShardId })
	if len(children) != 2 {
		t.Fatalf("after the split, %d open children of %s, want 2", len(children), *parent.ShardId)
	}
	during(func() {
		_, err := c.kin.MergeShards(t.Context(), &awskinesis.MergeShardsInput{
			StreamName: aws.String(cfg.Stream), ShardToMerge: children[0].ShardId, AdjacentShardToMerge: children[1].ShardId,
		})
		if err != nil {
			t.Fatalf("MergeShards: %v", err)
		}
		waitActive(t, c.kin, cfg.Stream)
	})
	appendRounds(2)
	t.Logf("appended %d rounds of %d keys", round, len(ks))

	log.waitFor(t, "every record", covers(appended))
	ds := log.snapshot()
	if dups := duplicates(ds); len(dups) > 0 {
		t.Errorf("delivered twice: %q", dups)
	}
	checkOrder(t, appended, ds, nil)
	perShard := map[string]int{}
	for _, d := range ds {
		perShard[d.msg.Shard]++
	}
	t.Logf("records per shard: %v", perShard)
	for _, ch := range children {
		if perShard[*ch.ShardId] == 0 {
			t.Errorf("child %s delivered nothing; the test did not append while it was open", *ch.ShardId)
		}
	}

	// Closed shards end at SHARD_END once read; the merged shard has both
	// children as parents.
	ls := waitLeases(t, a, group, "the closed shards to be checkpointed at SHARD_END", func(ls []kinesis.Lease) bool {
		ended := 0
		for _, l := range ls {
			if l.Checkpoint == kinesis.ShardEnd {
				ended++
			}
		}
		return len(ls) == 5 && ended == 3
	})
	want := []string{*children[0].ShardId, *children[1].ShardId}
	slices.Sort(want)
	if merged := ls[4]; !slices.Equal(merged.Parents, want) {
		t.Errorf("merged shard %s has parents %v, want %v", merged.Shard, merged.Parents, want)
	}
}

func shard(t *testing.T, kin *awskinesis.Client, stream, id string) ktypes.Shard {
	t.Helper()
	out, err := kin.ListShards(t.Context(), &awskinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatalf("ListShards: %v", err)
	}
	for _, s := range out.Shards {
		if aws.ToString(s.ShardId) == id {
			return s
		}
	}
	t.Fatalf("no shard %s in %s", id, stream)
	return ktypes.Shard{}
}

func openShards(t *testing.T, kin *awskinesis.Client, stream string, keep func(ktypes.Shard) bool) []ktypes.Shard {
	t.Helper()
	out, err := kin.ListShards(t.Context(), &awskinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatalf("ListShards: %v", err)
	}
	var open []ktypes.Shard
	for _, s := range out.Shards {
		if s.SequenceNumberRange.EndingSequenceNumber == nil && keep(s) {
			open = append(open, s)
		}
	}
	return open
}

// hidingKinesis leaves the shards in hidden out of ListShards, as Kinesis
// does once a closed shard's records are past the retention period.
type hidingKinesis struct {
	kinesis.KinesisAPI
	mu     sync.Mutex
	hidden map[string]bool
}

func (h *hidingKinesis) hide(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hidden[id] = true
}

func (h *hidingKinesis) ListShards(ctx context.Context, in *awskinesis.ListShardsInput, o ...func(*awskinesis.Options)) (*awskinesis.ListShardsOutput, error) {
	out, err := h.KinesisAPI.ListShards(ctx, in, o...)
	if err != nil {
		return out, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	c := *out
	c.Shards = slices.DeleteFunc(slices.Clone(out.Shards), func(s ktypes.Shard) bool { return h.hidden[aws.ToString(s.ShardId)] })
	return &c, nil
}

// TestTrimmedShardLeaseIsRemoved: once a finished parent shard is trimmed
// from the stream, the next listing removes its lease, and its children
// carry on.
func TestTrimmedShardLeaseIsRemoved(t *testing.T) {
	t.Parallel()
	const group = "trim"
	c, cfg := newStream(t, 1)
	hk := &hidingKinesis{KinesisAPI: c.kin, hidden: map[string]bool{}}
	cfg.Kinesis = hk
	cfg.PollInterval = 50 * time.Millisecond
	s := open(t, cfg)
	log := newLog()
	stop := consume(t, t.Context(), s, group, log.handler("a"))

	ks := keys(10)
	var appended []streamer.Record
	appendRound := func(round int) {
		t.Helper()
		rs := rounds(ks, round, 1)
		if err := s.Append(t.Context(), rs); err != nil {
			t.Fatalf("Append: %v", err)
		}
		appended = append(appended, rs...)
	}
	appendRound(0)
	parent := shard(t, c.kin, cfg.Stream, "shardId-000000000000")
	lo, _ := new(big.Int).SetString(aws.ToString(parent.HashKeyRange.StartingHashKey), 10)
	hi, _ := new(big.Int).SetString(aws.ToString(parent.HashKeyRange.EndingHashKey), 10)
	if _, err := c.kin.SplitShard(t.Context(), &awskinesis.SplitShardInput{
		StreamName: aws.String(cfg.Stream), ShardToSplit: parent.ShardId,
		NewStartingHashKey: aws.String(new(big.Int).Rsh(new(big.Int).Add(lo, hi), 1).String()),
	}); err != nil {
		t.Fatalf("SplitShard: %v", err)
	}
	waitActive(t, c.kin, cfg.Stream)
	appendRound(1)
	log.waitFor(t, "the records before and after the split", covers(appended))
	waitLeases(t, s, group, "the parent to be read to its end", func(ls []kinesis.Lease) bool {
		return len(ls) == 3 && ls[0].Shard == *parent.ShardId && ls[0].Checkpoint == kinesis.ShardEnd
	})
	if err := stop(); err != nil {
		t.Fatalf("Consume: %v", err)
	}

	hk.hide(*parent.ShardId)
	consume(t, t.Context(), s, group, log.handler("a"))
	ls := waitLeases(t, s, group, "the trimmed parent's lease to be removed", func(ls []kinesis.Lease) bool {
		return len(ls) == 2
	})
	for _, l := range ls {
		if l.Shard == *parent.ShardId || l.Checkpoint == kinesis.ShardEnd {
			t.Errorf("lease %+v left after the trim, want only the open children", l)
		}
	}
	appendRound(2)
	log.waitFor(t, "the records appended after the trim", covers(appended))
}
