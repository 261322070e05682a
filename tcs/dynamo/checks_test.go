package dynamo_test

import (
	"flag"
	"os"
	"strconv"
)

// convergenceChecks is how many histories TestConvergence checks: about 3.5 s
// each with -race against DynamoDB Local.
const convergenceChecks = 10

// setRapidChecks sets rapid's count to convergenceChecks unless the command
// line (-rapid.checks) or the environment (RAPID_CHECKS) chose one.
// replicatest.Convergence checks at least rapid's count (100 by default,
// some six minutes here), and takes a count that was set as it is. Only
// TestConvergence uses rapid in this package.
func setRapidChecks() {
	if !flag.Parsed() {
		flag.Parse()
	}
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if _, env := os.LookupEnv("RAPID_CHECKS"); set || env {
		return
	}
	if err := flag.Set("rapid.checks", strconv.Itoa(convergenceChecks)); err != nil {
		panic(err)
	}
}
