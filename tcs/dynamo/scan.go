package dynamo

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
)

// ScanDocs returns up to limit stored documents, tombstones included, in
// scan order. See tcs.Scanner.
func (r *Replica) ScanDocs(ctx context.Context, cursor string, limit int) ([]*tenant.Tenant, string, error) {
	var out []*tenant.Tenant
	next, err := r.scan(ctx, prefixDoc, cursor, limit, func(pk string, item map[string]types.AttributeValue) error {
		d, err := decodeDoc(strings.TrimPrefix(pk, prefixDoc), item)
		if err != nil {
			return err
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, "", r.wrap(ctx, err, "dynamo replica scan docs")
	}
	return out, next, nil
}

// ScanHosts returns up to limit hostname records, released ones included,
// in scan order. See tcs.Scanner.
func (r *Replica) ScanHosts(ctx context.Context, cursor string, limit int) ([]tcs.HostEntry, string, error) {
	var out []tcs.HostEntry
	next, err := r.scan(ctx, prefixHost, cursor, limit, func(pk string, item map[string]types.AttributeValue) error {
		h := strings.TrimPrefix(pk, prefixHost)
		st, err := parseHost(h, item)
		if err != nil {
			return err
		}
		out = append(out, tcs.HostEntry{Hostname: h, HostRecord: st.rec})
		return nil
	})
	if err != nil {
		return nil, "", r.wrap(ctx, err, "dynamo replica scan hosts")
	}
	return out, next, nil
}

// scan calls each for up to limit items whose key starts with prefix, from
// the position cursor names, with strongly consistent Scans. It returns the
// cursor of the last item visited if more items may follow it, else "".
//
// A cursor is the key of the last item returned (any item's key is a valid
// ExclusiveStartKey), so a page can end in the middle of a Scan page. Items
// of the other kind are filtered out by DynamoDB, after its Limit: a Scan
// page may come back short or empty, and scan goes on to the next one.
func (r *Replica) scan(ctx context.Context, prefix, cursor string, limit int, each func(pk string, item map[string]types.AttributeValue) error) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if limit <= 0 {
		limit = DefaultScanLimit
	}
	start, err := decodeCursor(prefix, cursor)
	if err != nil {
		return "", err
	}
	in := &dynamodb.ScanInput{
		TableName:                 r.table,
		ConsistentRead:            aws.Bool(true),
		FilterExpression:          aws.String("begins_with(#pk, :prefix)"),
		ExpressionAttributeNames:  map[string]string{"#pk": attrPK},
		ExpressionAttributeValues: map[string]types.AttributeValue{":prefix": str(prefix)},
		// Items evaluated per request, before the filter: enough that a
		// page usually takes one request, bounded so that a small page does
		// not read a megabyte it then throws away.
		Limit: aws.Int32(int32(min(max(2*limit, 100), 1000))),
	}
	if start != "" {
		in.ExclusiveStartKey = key(start)
	}
	n := 0
	for {
		out, err := r.db.Scan(ctx, in)
		if err != nil {
			return "", callErr(err)
		}
		for i, item := range out.Items {
			pk, ok := item[attrPK].(*types.AttributeValueMemberS)
			if !ok || !strings.HasPrefix(pk.Value, prefix) {
				return "", fmt.Errorf("scan returned an item without a %s key: %v", prefix, item)
			}
			if err := each(pk.Value, item); err != nil {
				return "", err
			}
			if n++; n == limit {
				if i < len(out.Items)-1 || len(out.LastEvaluatedKey) > 0 {
					return encodeCursor(pk.Value), nil
				}
				return "", nil
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return "", nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// A cursor is the partition key of the last item returned, base64url
// encoded so that callers treat it as opaque.
func encodeCursor(pk string) string { return base64.RawURLEncoding.EncodeToString([]byte(pk)) }

// decodeCursor returns the partition key cursor names ("" for ""); a
// cursor that is not one of prefix's kind is Invalid.
func decodeCursor(prefix, cursor string) (string, error) {
	if cursor == "" {
		return "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || !strings.HasPrefix(string(raw), prefix) {
		what := map[string]string{prefixDoc: "ScanDocs", prefixHost: "ScanHosts"}[prefix]
		return "", tenant.Errorf(tenant.Invalid, "cursor %q is not one %s returned", cursor, what)
	}
	return string(raw), nil
}
