package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/infra/cloudformation"
	"github.com/tcs-dev/tcs/infra/provision"
)

const infraUsage = `usage: tcsctl infra apply --regions R1,R2,… [--shards N] [--wait D] [--dry-run] [flags]
       tcsctl infra template home|region

apply creates the AWS resources TCS needs, idempotently, through the SDK
(credentials, region and endpoints from the standard AWS chain, e.g.
AWS_ENDPOINT_URL_DYNAMODB for an emulator): in the home region the catalog
table (deletion protection, point-in-time recovery) and the change stream
(KMS-encrypted); per serving region the replica table, the lease table and
the invalidation topic (KMS-encrypted). What an endpoint cannot do (an
emulator: point-in-time recovery, stream encryption) is warned about, not an
error. Production deployments use the CloudFormation templates (template
prints them), which also hold the IAM policies.`

func runInfra(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, infraUsage)
		return errors.New("missing infra command")
	}
	switch args[0] {
	case "apply":
		return runInfraApply(ctx, e, args[1:])
	case "template":
		if len(args) != 2 {
			fmt.Fprintln(e.stderr, infraUsage)
			return errors.New("infra template takes one argument: home or region")
		}
		switch args[1] {
		case "home":
			_, err := e.stdout.Write(cloudformation.Home)
			return err
		case "region":
			_, err := e.stdout.Write(cloudformation.Region)
			return err
		}
		return fmt.Errorf("infra template %q: want home or region", args[1])
	case "-h", "--help", "help":
		fmt.Fprintln(e.stdout, infraUsage)
		return nil
	}
	fmt.Fprintln(e.stderr, infraUsage)
	return fmt.Errorf("unknown infra command %q", args[0])
}

func runInfraApply(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("tcsctl infra apply", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	be := backend.Register(fs, e.getenv)
	regions := fs.String("regions", e.getenv("TCS_AWS_REGIONS"), "serving regions, comma-separated, e.g. us-east-1,eu-west-1 (env TCS_AWS_REGIONS)")
	shards := fs.Int("shards", 2, "shards of a new change stream (an existing stream keeps its own)")
	wait := fs.Duration("wait", 0, "first wait up to this long for the AWS_ENDPOINT_URL_* endpoints to accept connections (emulators starting)")
	dryRun := fs.Bool("dry-run", false, "print the resources apply would ensure, and change nothing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	be.Backend = backend.AWS
	if err := be.Validate(); err != nil {
		return err
	}
	plan := provision.Plan{Names: be.Names, HomeRegion: be.HomeRegion, Shards: *shards}
	for _, r := range strings.Split(*regions, ",") {
		if r = strings.TrimSpace(r); r != "" {
			plan.Regions = append(plan.Regions, r)
		}
	}
	if err := plan.Validate(); err != nil {
		return err
	}
	if *dryRun {
		for _, r := range plan.Resources() {
			fmt.Fprintf(e.stdout, "would ensure %s\n", r)
		}
		return nil
	}
	if *wait > 0 {
		var endpoints []string
		for _, k := range []string{"AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_SNS", "AWS_ENDPOINT_URL_SQS"} {
			if v := e.getenv(k); v != "" {
				endpoints = append(endpoints, v)
			}
		}
		if err := provision.WaitForEndpoints(ctx, *wait, endpoints...); err != nil {
			return err
		}
	}
	// Load the SDK configuration once up front: a broken shared config file
	// is an error here, not later.
	if _, err := be.Clients(ctx, plan.HomeRegion); err != nil {
		return err
	}
	start := time.Now()
	if err := provision.Apply(ctx, plan, be.ProvisionClients(ctx), e.stdout); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "infrastructure for prefix %q ready (home %s, regions %s) in %v\n",
		be.Names.Prefix, plan.HomeRegion, strings.Join(plan.Regions, ","), time.Since(start).Round(time.Millisecond))
	return nil
}
