package chaos

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
)

// DefaultThresholds is the committed thresholds.json: the bounds of issue 17
// the suite fails above.
//
//go:embed thresholds.json
var DefaultThresholds []byte

// Thresholds are the bounds a run must hold (thresholds.json; README:
// docs/chaos.md).
type Thresholds struct {
	// Totals over the whole run.
	LostWrites               int  `json:"lost_writes"`
	DivergentWrites          int  `json:"divergent_writes"`
	RegionMismatches         int  `json:"region_mismatches"`
	Resurrections            int  `json:"resurrections"`
	ClientVersionRegressions int  `json:"client_version_regressions"`
	RegionVersionRegressions int  `json:"region_version_regressions"`
	VerifyClean              bool `json:"verify_clean"`
	ProcessesRecovered       bool `json:"processes_recovered"`
	// ConvergenceSeconds bounds, for every fault, the time from the heal
	// until every region answers every acknowledged write.
	ConvergenceSeconds float64 `json:"convergence_seconds"`
	ProcessKill        struct {
		// ClientAvailability: share of lookups through the client answered
		// while a process is down, per client.
		ClientAvailability float64 `json:"client_availability"`
	} `json:"process_kill"`
	SNSSQSFreeze struct {
		// LagP99IncreaseSeconds: how much a region's replication lag p99
		// may exceed the baseline's while SNS/SQS is frozen.
		LagP99IncreaseSeconds float64 `json:"lag_p99_increase_seconds"`
		// OutdatedOverTTLSeconds: how far past the cache TTL an answer may
		// be outdated (a newer version acknowledged that long ago).
		OutdatedOverTTLSeconds float64 `json:"outdated_over_ttl_seconds"`
	} `json:"sns_sqs_freeze"`
	DynamoDBFreeze struct {
		// CatalogAnswerWithinSeconds: every write gets an answer (2xx, or 503)
		// within this long; later or none is a hung request.
		CatalogAnswerWithinSeconds float64 `json:"catalog_answer_within_seconds"`
		// RecentLookupAvailability: share of lookups of hostnames the reader
		// was served in the previous minute (it got an answer for them)
		// answered, per reader (each region's node, each client).
		RecentLookupAvailability float64 `json:"recent_lookup_availability"`
	} `json:"dynamodb_freeze"`
}

// LoadThresholds reads thresholds from path, or the committed ones when path
// is empty. Unknown fields and out-of-range values are errors naming them.
func LoadThresholds(path string) (Thresholds, error) {
	data, name := DefaultThresholds, "thresholds.json (committed)"
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return Thresholds{}, fmt.Errorf("read thresholds: %w", err)
		}
		name = path
	}
	var t Thresholds
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return Thresholds{}, fmt.Errorf("thresholds %s: %w", name, err)
	}
	for field, v := range map[string]int{"lost_writes": t.LostWrites, "divergent_writes": t.DivergentWrites,
		"region_mismatches": t.RegionMismatches, "resurrections": t.Resurrections,
		"client_version_regressions": t.ClientVersionRegressions, "region_version_regressions": t.RegionVersionRegressions} {
		if v < 0 {
			return Thresholds{}, fmt.Errorf("thresholds %s: %s is %d, want ≥ 0", name, field, v)
		}
	}
	for field, v := range map[string]float64{"convergence_seconds": t.ConvergenceSeconds,
		"dynamodb_freeze.catalog_answer_within_seconds": t.DynamoDBFreeze.CatalogAnswerWithinSeconds} {
		if v <= 0 {
			return Thresholds{}, fmt.Errorf("thresholds %s: %s is %v, want > 0", name, field, v)
		}
	}
	for field, v := range map[string]float64{"sns_sqs_freeze.lag_p99_increase_seconds": t.SNSSQSFreeze.LagP99IncreaseSeconds,
		"sns_sqs_freeze.outdated_over_ttl_seconds": t.SNSSQSFreeze.OutdatedOverTTLSeconds} {
		if v < 0 {
			return Thresholds{}, fmt.Errorf("thresholds %s: %s is %v, want ≥ 0", name, field, v)
		}
	}
	for field, v := range map[string]float64{"process_kill.client_availability": t.ProcessKill.ClientAvailability,
		"dynamodb_freeze.recent_lookup_availability": t.DynamoDBFreeze.RecentLookupAvailability} {
		if v <= 0 || v > 1 {
			return Thresholds{}, fmt.Errorf("thresholds %s: %s is %v, want a share in (0, 1]", name, field, v)
		}
	}
	return t, nil
}
