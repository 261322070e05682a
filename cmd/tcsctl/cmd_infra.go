package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/spf13/cobra"

	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/infra/cloudformation"
	"github.com/tcs-dev/tcs/infra/provision"
)

const infraUsage = `apply creates the AWS resources TCS needs, idempotently, through the SDK
(credentials, region and endpoints from the standard AWS chain, e.g.
AWS_ENDPOINT_URL_DYNAMODB for an emulator): in the home region the catalog
table (deletion protection, point-in-time recovery) and the change stream
(KMS-encrypted); per serving region the replica table, the lease table and
the invalidation topic (KMS-encrypted). What an endpoint cannot do (an
emulator: point-in-time recovery, stream encryption) is warned about, not an
error. Production deployments use the CloudFormation templates (template
prints them), which also hold the IAM policies.`

func newInfraCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "infra (apply | template home|region)",
		Short: "create the AWS resources (apply) or print the CloudFormation templates (template)",
		Long:  infraUsage,
		Args:  cobra.ArbitraryArgs,
		RunE:  subcommandsOnly,
	}
	template := &cobra.Command{
		Use:       "template home|region",
		Short:     "print the CloudFormation template of the home region or of a serving region",
		Args:      exactArgs(1),
		ValidArgs: []string{"home", "region"},
		RunE: e.action(func(ctx context.Context, args []string) error {
			switch args[0] {
			case "home":
				_, err := e.stdout.Write(cloudformation.Home)
				return err
			case "region":
				_, err := e.stdout.Write(cloudformation.Region)
				return err
			}
			return usagef("infra template %q: want home or region", args[0])
		}),
	}
	apply := &cobra.Command{
		Use:   "apply --regions R1,R2,… [--shards N] [--wait D] [--dry-run] [flags]",
		Short: "create the AWS resources TCS needs, idempotently",
		Long:  infraUsage,
		Args:  noArgs,
	}
	// The backend's flags are Go flags shared with the servers.
	gfs := flag.NewFlagSet("tcsctl infra apply", flag.ContinueOnError)
	be := backend.Register(gfs, e.getenv)
	fs := apply.Flags()
	fs.AddGoFlagSet(gfs)
	regions := fs.String("regions", e.getenv("TCS_AWS_REGIONS"), "serving regions, comma-separated, e.g. us-east-1,eu-west-1 (env TCS_AWS_REGIONS)")
	shards := fs.Int("shards", 2, "shards of a new change stream (an existing stream keeps its own)")
	wait := fs.Duration("wait", 0, "first wait up to this long for the AWS_ENDPOINT_URL_* endpoints to accept connections (emulators starting)")
	dryRun := fs.Bool("dry-run", false, "print the resources apply would ensure, and change nothing")
	apply.RunE = e.action(func(ctx context.Context, _ []string) error {
		return runInfraApply(ctx, e, be, *regions, *shards, *wait, *dryRun)
	})
	cmd.AddCommand(apply, template)
	return cmd
}

func runInfraApply(ctx context.Context, e *env, be *backend.Config, regions string, shards int, wait time.Duration, dryRun bool) error {
	be.Backend = backend.AWS
	if err := be.Validate(); err != nil {
		return err
	}
	plan := provision.Plan{Names: be.Names, HomeRegion: be.HomeRegion, Shards: shards}
	for _, r := range strings.Split(regions, ",") {
		if r = strings.TrimSpace(r); r != "" {
			plan.Regions = append(plan.Regions, r)
		}
	}
	if err := plan.Validate(); err != nil {
		return err
	}
	if dryRun {
		for _, r := range plan.Resources() {
			fmt.Fprintf(e.stdout, "would ensure %s\n", r)
		}
		return nil
	}
	if wait > 0 {
		var endpoints []string
		for _, k := range []string{"AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_SNS", "AWS_ENDPOINT_URL_SQS"} {
			if v := e.getenv(k); v != "" {
				endpoints = append(endpoints, v)
			}
		}
		if err := provision.WaitForEndpoints(ctx, wait, endpoints...); err != nil {
			return err
		}
	}
	// Load the SDK configuration once up front: a broken shared config file
	// is an error here, not later.
	if _, err := be.Clients(ctx, plan.HomeRegion); err != nil {
		return err
	}
	start := time.Now()
	clients := provision.NewClients(func(region string) aws.Config {
		cfg, err := be.AWSConfig(ctx, region)
		if err != nil {
			// LoadDefaultConfig fails only on a broken shared config file,
			// which loading the home region's configuration reported above.
			panic(err)
		}
		return cfg
	})
	if err := provision.Apply(ctx, plan, clients, e.stdout); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "infrastructure for prefix %q ready (home %s, regions %s) in %v\n",
		be.Names.Prefix, plan.HomeRegion, strings.Join(plan.Regions, ","), time.Since(start).Round(time.Millisecond))
	return nil
}
