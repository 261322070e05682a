package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/infra/provision"
	"github.com/tcs-dev/tcs/internal/testwait"
)

func TestMain(m *testing.M) {
	// The tests' systems mostly wait (on retries, timeouts, replication).
	testwait.WaitBoundParallel(8)
	os.Exit(emulators.Main(m))
}

// infra runs tcsctl with the emulators' environment (the SDK reads the
// process environment, so the caller must not be parallel).
func infra(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestInfraApply(t *testing.T) {
	emu := emulators.SharedAWS(t)
	emu.Setenv(t)
	env := emu.Env()

	// A dry run lists the resources and creates none.
	code, out, errOut := infra(t, env, "infra", "apply", "--aws-prefix", "dry", "--regions", "eu-west-1", "--dry-run")
	if code != 0 || !strings.Contains(out, "would ensure dynamodb table dry-catalog (us-east-1)") || !strings.Contains(out, "would ensure sns topic dry-invalidations-eu-west-1 (eu-west-1)") {
		t.Fatalf("infra apply --dry-run: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, _ := infra(t, env, "infra", "apply", "--aws-prefix", "dry", "--regions", "eu-west-1", "--dry-run"); code != 0 || strings.Count(out, "would ensure") != 8 {
		t.Errorf("dry run lists %d resources, want 8 (catalog, stream, publish leases, work leases, nodes; replica, leases, topic):\n%s", strings.Count(out, "would ensure"), out)
	}
	cfg, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion("us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	var notFound *dtypes.ResourceNotFoundException
	if _, err := provision.NewDynamoDB(cfg).DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String("dry-catalog")}); !errors.As(err, &notFound) {
		t.Errorf("after a dry run, describe dry-catalog: %v; want ResourceNotFoundException", err)
	}

	args := []string{"infra", "apply", "--aws-prefix", "cli", "--regions", "us-east-1,eu-west-1", "--shards", "1", "--wait", "10s"}
	code, out, errOut = infra(t, env, args...)
	if code != 0 {
		t.Fatalf("infra apply: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"cli-catalog", "cli-changes", "cli-replica-eu-west-1", "cli-leases-us-east-1", "cli-invalidations-eu-west-1", "ready"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code, out, errOut = infra(t, env, args...); code != 0 {
		t.Fatalf("second infra apply (idempotent): exit %d\n%s\n%s", code, out, errOut)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"infra", "apply", "--aws-prefix", "cli"}, "no serving regions"},
		{[]string{"infra", "apply", "--regions", "EU"}, `region "EU"`},
		{[]string{"infra", "apply", "--regions", "us-east-1", "--aws-prefix", "Bad_Prefix"}, "--aws-prefix"},
		{[]string{"infra", "apply", "--regions", "us-east-1", "--shards", "0"}, "shards 0"},
		{[]string{"infra", "frob"}, "unknown infra command"},
		{[]string{"infra", "template", "moon"}, "want home or region"},
	} {
		code, _, errOut := infra(t, env, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
	noRegion := map[string]string{}
	if code, _, errOut := infra(t, noRegion, "infra", "apply", "--regions", "us-east-1"); code != 2 || !strings.Contains(errOut, "home region") {
		t.Errorf("without AWS_REGION: exit %d, %q", code, errOut)
	}
}

func TestInfraTemplate(t *testing.T) {
	t.Parallel()
	for which, want := range map[string]string{"home": "CatalogTable", "region": "ReplicaTable"} {
		code, out, errOut := infra(t, nil, "infra", "template", which)
		if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "AWSTemplateFormatVersion") {
			t.Errorf("infra template %s: exit %d, %s %s", which, code, errOut, out[:min(len(out), 200)])
		}
	}
}
