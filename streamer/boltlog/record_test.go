package boltlog

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/streamer"
)

func TestRecordRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r := streamer.Record{
			PartitionKey: rapid.StringN(1, maxPartitionKeyChars, -1).Draw(t, "key"),
			Data:         rapid.SliceOfN(rapid.Byte(), 0, 2048).Draw(t, "data"),
		}
		at := rapid.Int64().Draw(t, "at")
		prefix := rapid.SliceOfN(rapid.Byte(), 0, 16).Draw(t, "prefix")
		v := appendRecord(prefix, at, r)
		if len(v) > len(prefix)+recordSize(r) {
			t.Fatalf("encoded %d bytes, recordSize says at most %d", len(v)-len(prefix), recordSize(r))
		}
		got, err := decodeRecord(v[len(prefix):])
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		want := streamer.Message{PartitionKey: r.PartitionKey, Data: r.Data, AppendedAt: time.Unix(0, at).UTC()}
		if len(r.Data) == 0 {
			want.Data = nil
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}

func TestSequenceOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := rapid.Uint64().Draw(t, "a"), rapid.Uint64().Draw(t, "b")
		if (a < b) != (formatSequence(a) < formatSequence(b)) {
			t.Fatalf("%d < %d is %v, but %q < %q is not", a, b, a < b, formatSequence(a), formatSequence(b))
		}
	})
}
