package streamer

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/tcs-dev/tcs/catalog/tenant"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// EncodeEvent serialises a change event as the stream carries it: a
// tcs.v1.ChangeEvent protobuf message.
func EncodeEvent(ev *tenant.ChangeEvent) ([]byte, error) {
	b, err := proto.Marshal(tcsv1.EventToProto(ev))
	if err != nil {
		return nil, fmt.Errorf("encode event %s@%d: %w", ev.TenantID, ev.Version, err)
	}
	return b, nil
}

// DecodeEvent parses a stream record written by EncodeEvent.
func DecodeEvent(b []byte) (*tenant.ChangeEvent, error) {
	var p tcsv1.ChangeEvent
	if err := proto.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	ev, err := tcsv1.EventFromProto(&p)
	if err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	if ev.TenantID == "" || ev.Tenant == nil {
		return nil, fmt.Errorf("decode event: no tenant")
	}
	return ev, nil
}
