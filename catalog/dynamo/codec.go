package dynamo

import (
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// claim is the stored state of one hostname; a hostname never claimed is
// free at claim version 0 and has no item (exists false).
type claim struct {
	owner   string
	version int64
	exists  bool
}

// stored is a tenant item as read: the document (tombstone or not) and the
// hash of its newest audit record ("" if written before chaining).
type stored struct {
	doc       *tenant.Tenant
	auditHead string
}

func parseTenant(item map[string]types.AttributeValue) (*stored, error) {
	if len(item) == 0 {
		return nil, nil
	}
	t, err := decodeTenant(item)
	if err != nil {
		return nil, err
	}
	st := &stored{doc: t}
	if h, ok := item[attrAuditHead].(*types.AttributeValueMemberS); ok {
		st.auditHead = h.Value
	}
	return st, nil
}

// planClaims returns claims as catalog.PlanWrite and catalog.ResyncEvent
// take them.
func planClaims(claims map[string]claim) map[string]catalog.HostnameClaim {
	out := make(map[string]catalog.HostnameClaim, len(claims))
	for h, c := range claims {
		out[h] = catalog.HostnameClaim{Owner: c.owner, Version: c.version}
	}
	return out
}

// parseClaims picks the claims of hostnames out of items (keyed by itemKey);
// a hostname without an item is free at claim version 0.
func parseClaims(items map[string]map[string]types.AttributeValue, hostnames []string) (map[string]claim, error) {
	claims := make(map[string]claim, len(hostnames))
	for _, h := range hostnames {
		item := items[itemKey(prefixHost+h, skClaim)]
		if item == nil {
			claims[h] = claim{}
			continue
		}
		v, err := numAttr(item, attrClaimVersion)
		if err != nil {
			return nil, fmt.Errorf("stored hostname claim %s: %w", h, err)
		}
		c := claim{version: v, exists: true}
		if owner, ok := item[attrOwner].(*types.AttributeValueMemberS); ok {
			c.owner = owner.Value
		}
		claims[h] = c
	}
	return claims, nil
}

func notFound(id string) error {
	return tenant.Errorf(tenant.NotFound, "tenant %q not found", id)
}

func decodeTenant(item map[string]types.AttributeValue) (*tenant.Tenant, error) {
	t := new(tenant.Tenant)
	if err := decodeItem(item, t, "tenant"); err != nil {
		return nil, err
	}
	return t, nil
}

// decodeItem unmarshals the JSON document of a stored item.
func decodeItem(item map[string]types.AttributeValue, into any, what string) error {
	sk, _ := item[attrSK].(*types.AttributeValueMemberS)
	var k string
	if sk != nil {
		k = sk.Value
	}
	doc, ok := item[attrDoc].(*types.AttributeValueMemberS)
	if !ok {
		return fmt.Errorf("stored %s %s has no document", what, k)
	}
	return catalog.DecodeStored([]byte(doc.Value), into, what, k)
}

func numAttr(item map[string]types.AttributeValue, name string) (int64, error) {
	n, ok := item[name].(*types.AttributeValueMemberN)
	if !ok {
		return 0, fmt.Errorf("no number %s", name)
	}
	return strconv.ParseInt(n.Value, 10, 64)
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func unum(n uint64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatUint(n, 10)}
}
