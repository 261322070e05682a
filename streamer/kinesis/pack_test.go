package kinesis_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/kinesis"
)

// Unpack gives back exactly what Pack packed, and never unpacks data that
// does not start with the packing magic (a protobuf message never does)
// or whose checksum is wrong.
func TestPackRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		datas := rapid.SliceOfN(rapid.SliceOf(rapid.Byte()), 1, 20).Draw(t, "datas")
		packed := kinesis.Pack(datas)
		got, ok := kinesis.Unpack(packed)
		if !ok || len(got) != len(datas) {
			t.Fatalf("Unpack(Pack(%d records)) = %d records, ok %v", len(datas), len(got), ok)
		}
		for i := range datas {
			if !bytes.Equal(got[i], datas[i]) {
				t.Fatalf("record %d: %x, want %x", i, got[i], datas[i])
			}
		}
		// Any one byte changed: not a packed record (the checksum, or the
		// magic, no longer matches).
		i := rapid.IntRange(0, len(packed)-1).Draw(t, "flip")
		bad := bytes.Clone(packed)
		bad[i] ^= 1 << rapid.IntRange(0, 7).Draw(t, "bit")
		if _, ok := kinesis.Unpack(bad); ok {
			t.Fatalf("Unpack accepted a packed record with byte %d changed", i)
		}
	})
	rapid.Check(t, func(t *rapid.T) {
		data := rapid.SliceOf(rapid.Byte()).Draw(t, "data")
		if len(data) > 0 && data[0] == 0 {
			data[0] = 1
		}
		if _, ok := kinesis.Unpack(data); ok {
			t.Fatalf("Unpack accepted %x, which does not start with a zero byte", data)
		}
	})
}

func FuzzUnpack(f *testing.F) {
	f.Add(kinesis.Pack([][]byte{[]byte("a"), []byte("bc")}))
	f.Add([]byte("\x00tcs-pack1\x05ab"))
	f.Fuzz(func(t *testing.T, data []byte) {
		datas, ok := kinesis.Unpack(data)
		if !ok {
			return
		}
		// What unpacks packs back to the same bytes.
		if again := kinesis.Pack(datas); !bytes.Equal(again, data) {
			t.Fatalf("Pack(Unpack(%x)) = %x", data, again)
		}
	})
}

// putCounter counts PutRecords calls and the entries they carry.
type putCounter struct {
	kinesis.KinesisAPI
	mu      sync.Mutex
	calls   int
	entries int
}

func (p *putCounter) PutRecords(ctx context.Context, in *awskinesis.PutRecordsInput, o ...func(*awskinesis.Options)) (*awskinesis.PutRecordsOutput, error) {
	p.mu.Lock()
	p.calls++
	p.entries += len(in.Records)
	p.mu.Unlock()
	return p.KinesisAPI.PutRecords(ctx, in, o...)
}

func (p *putCounter) counts() (calls, entries int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls, p.entries
}

// A backlog of several records per key is stored in one PutRecords round,
// one Kinesis record per key, and delivered as the records appended, in
// order, numbered by Sub; with DisablePacking it takes one round per record
// of the busiest key, and every message has Sub 0.
func TestAppendPacksABacklog(t *testing.T) {
	t.Parallel()
	for _, disable := range []bool{false, true} {
		t.Run(fmt.Sprintf("DisablePacking=%v", disable), func(t *testing.T) {
			t.Parallel()
			c, cfg := newStream(t, 2)
			counter := &putCounter{KinesisAPI: c.kin}
			cfg.Kinesis, cfg.DisablePacking = counter, disable
			s := open(t, cfg)
			ks := keys(5)
			want := rounds(ks, 0, 8) // 8 records per key, keys interleaved
			if err := s.Append(t.Context(), want); err != nil {
				t.Fatal(err)
			}
			calls, entries := counter.counts()
			wantCalls, wantEntries := 1, len(ks)
			if disable {
				wantCalls, wantEntries = 8, len(want)
			}
			if calls != wantCalls || entries != wantEntries {
				t.Errorf("Append of 8 records for each of %d keys: %d PutRecords carrying %d records; want %d carrying %d", len(ks), calls, entries, wantCalls, wantEntries)
			}

			log := newLog()
			stop := consume(t, t.Context(), s, "g", log.handler("w"))
			log.waitFor(t, "every record", covers(want))
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			ds := log.snapshot()
			checkOrder(t, want, ds, nil)
			subs := map[string][]int{}
			for _, d := range ds {
				subs[d.msg.PartitionKey] = append(subs[d.msg.PartitionKey], d.msg.Sub)
			}
			for k, got := range subs {
				for i, sub := range got {
					if wantSub := i; disable && sub != 0 || !disable && sub != wantSub {
						t.Errorf("key %s: message %d has Sub %d (packing disabled: %v)", k, i, sub, disable)
					}
				}
			}
		})
	}
}

// A key's records are packed only up to Kinesis's record size: the rest go
// in the next round.
func TestAppendPacksUpToTheRecordLimit(t *testing.T) {
	t.Parallel()
	c, cfg := newStream(t, 1)
	counter := &putCounter{KinesisAPI: c.kin}
	cfg.Kinesis = counter
	s := open(t, cfg)
	var want []streamer.Record
	for i := range 3 { // 3 × 400 KB: two fit in a packed record, not three
		want = append(want, streamer.Record{PartitionKey: "big", Data: bytes.Repeat([]byte{byte('a' + i)}, 400<<10)})
	}
	if err := s.Append(t.Context(), want); err != nil {
		t.Fatal(err)
	}
	if calls, entries := counter.counts(); calls != 2 || entries != 2 {
		t.Errorf("3 records of 400 KB for one key: %d PutRecords carrying %d records; want 2 carrying 2", calls, entries)
	}
	log := newLog()
	stop := consume(t, t.Context(), s, "g", log.handler("w"))
	log.waitFor(t, "every record", covers(want))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ds := log.snapshot()
	if len(ds) != len(want) {
		t.Fatalf("%d messages delivered; want %d", len(ds), len(want))
	}
	for i, d := range ds {
		if !bytes.Equal(d.msg.Data, want[i].Data) {
			t.Errorf("message %d: %d bytes of %q; want record %d", i, len(d.msg.Data), d.msg.Data[:1], i)
		}
	}
}

// A record that starts like a packed one but is not (its checksum fails) is
// delivered as it was stored.
func TestLookalikeRecordIsDeliveredAsIs(t *testing.T) {
	t.Parallel()
	c, cfg := newStream(t, 1)
	s := open(t, cfg)
	fake := kinesis.Pack([][]byte{[]byte("x")})
	fake[len(fake)-1] ^= 0xff
	if _, err := c.kin.PutRecords(t.Context(), &awskinesis.PutRecordsInput{StreamName: aws.String(cfg.Stream),
		Records: []ktypes.PutRecordsRequestEntry{{PartitionKey: aws.String("k"), Data: fake}}}); err != nil {
		t.Fatal(err)
	}
	want := []streamer.Record{{PartitionKey: "k", Data: fake}}
	log := newLog()
	stop := consume(t, t.Context(), s, "g", log.handler("w"))
	log.waitFor(t, "the record", covers(want))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if ds := log.snapshot(); len(ds) != 1 || !bytes.Equal(ds[0].msg.Data, fake) {
		t.Errorf("delivered %d messages; want the one record as stored", len(ds))
	}
}
