package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/internal/buildinfo"
	"github.com/tcs-dev/tcs/internal/jobrun"
)

// env is what a command gets from run: the environment and the streams.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// isTerminal reports whether stdin is a terminal, where tcsctl may ask
	// for a confirmation.
	isTerminal func() bool
	// ran is set when a command's own code started: an error before that is
	// cobra's (usage), after it the command's.
	ran bool
}

func newEnv(getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) *env {
	return &env{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr, isTerminal: func() bool {
		f, ok := stdin.(*os.File)
		return ok && term.IsTerminal(int(f.Fd()))
	}}
}

// Exit codes.
const (
	exitOK          = 0
	exitFinding     = 1
	exitError       = 2
	exitInterrupted = 130
)

// exitCodeError carries an exit code other than exitError, with an optional
// message for stderr.
type exitCodeError struct {
	code int
	msg  string
}

func (e *exitCodeError) Error() string { return e.msg }

// finding is an outcome that is not an error of tcsctl but deserves exit
// code 1: drift found, a hostname not found, bad input lines.
func finding(format string, args ...any) error {
	return &exitCodeError{code: exitFinding, msg: fmt.Sprintf(format, args...)}
}

// usageError is bad usage: exit 2, with a hint to the command's help.
type usageError struct{ err error }

func (u *usageError) Error() string { return u.err.Error() }
func (u *usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

const exitCodesHelp = "Exit codes: 0 ok, 1 drift or a finding, 2 error, 130 interrupted."

// newRoot builds the command tree. Commands write to e's streams; help goes
// to stdout, errors to stderr.
func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "tcsctl",
		Short: "the SRE tool of TCS: tenants, lookups, drift, bulk changes",
		Long: "tcsctl looks tenants up, manages them through the catalog, compares every region's replica with\n" +
			"the source of truth, repairs drift, and changes, imports or exports tenants in bulk.\n\n" +
			"Connection settings come from flags, then environment variables, then the named context of\n" +
			"the config file ($TCSCTL_CONFIG, else ~/.config/tcsctl/config.yaml; see tcsctl config), then\n" +
			"defaults. " + exitCodesHelp,
		Version:           buildinfo.Get().String("tcsctl"),
		SilenceErrors:     true,
		SilenceUsage:      true,
		DisableAutoGenTag: true,
		Args:              cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q%s", args[0], suggest(cmd, args[0]))
			}
			cmd.SetOut(e.stderr)
			_ = cmd.Usage()
			return &exitCodeError{code: exitError}
		},
	}
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetUsageTemplate(usageTemplate)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.AddGroup(&cobra.Group{ID: "tenants", Title: "Tenants:"}, &cobra.Group{ID: "regions", Title: "Regions and drift:"},
		&cobra.Group{ID: "bulk", Title: "Bulk operations:"}, &cobra.Group{ID: "admin", Title: "Administration:"})
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("tenants", newGetCmd(e), newTenantCmd(e), newAuditCmd(e), newPlacementCmd(e), newWaitCmd(e), newMoveCmd(e))
	add("regions", newLookupCmd(e), newVerifyCmd(e), newRepairCmd(e), newResyncCmd(e))
	add("bulk", newTransformCmd(e), newBackfillCmd(e), newExportCmd(e))
	add("admin", newConfigCmd(e), newTokenCmd(e), newInfraCmd(e), newVersionCmd(e))
	root.SetHelpCommandGroupID("admin")
	root.SetCompletionCommandGroupID("admin")
	root.InitDefaultCompletionCmd()
	root.InitDefaultHelpCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "completion":
			// An unknown shell is bad usage, not a request for help.
			c.Args, c.RunE = cobra.ArbitraryArgs, subcommandsOnly
		case "help":
			// So is help about a command that does not exist.
			c.Args = func(_ *cobra.Command, args []string) error {
				if len(args) == 0 {
					return nil
				}
				if found, rest, err := root.Find(args); err != nil || found == root || len(rest) > 0 {
					parent, typo := root, args[0]
					if err == nil && len(rest) > 0 {
						parent, typo = found, rest[0]
					}
					return usagef("no help for %q: not a command%s", strings.Join(args, " "), suggest(parent, typo))
				}
				return nil
			}
		}
	}
	// The connection flags are accepted before the command too (tcsctl
	// --context prod verify), as kubectl's are. The root declares them,
	// hidden, so that cobra finds the command past them; the command's own
	// connection flags, which shadow the root's, take the values. A command
	// that connects to nothing accepts and ignores them.
	var global connFlags
	global.register(root.PersistentFlags(), e.getenv)
	root.PersistentFlags().VisitAll(func(f *pflag.Flag) { f.Hidden = true })
	completeContextFlags(e, root)
	return root
}

func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the build (as --version does)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(e.stdout, buildinfo.Get().String("tcsctl"))
			return err
		},
	}
}

// execute runs the command args name and returns the exit code.
func (e *env) execute(ctx context.Context, args []string) int {
	root := newRoot(e)
	root.SetArgs(normalizeArgs(root, args))
	cmd, err := root.ExecuteContextC(ctx)
	name := "tcsctl"
	if top := topCommand(cmd); top != "" {
		name += " " + top
	}
	var ec *exitCodeError
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, jobrun.ErrInterrupted):
		fmt.Fprintf(e.stderr, "%s: interrupted; progress saved, run the same command again to continue\n", name)
		return exitInterrupted
	case errors.As(err, &ec):
		if ec.msg != "" {
			fmt.Fprintf(e.stderr, "%s: %s\n", name, ec.msg)
		}
		return ec.code
	case errors.As(err, &ue) || !e.ran:
		// Bad usage: cobra's own errors (an unknown flag or command, a
		// wrong number of arguments) and the commands' usage errors.
		fmt.Fprintf(e.stderr, "%s: %v\nRun '%s --help' for usage.\n", name, err, cmd.CommandPath())
		return exitError
	}
	fmt.Fprintf(e.stderr, "%s: %v\n", name, err)
	return exitError
}

// topCommand is the name of cmd's ancestor just below the root (cmd's own
// if that is it), "" for the root: errors name it as before cobra.
func topCommand(cmd *cobra.Command) string {
	if cmd == nil || !cmd.HasParent() {
		return ""
	}
	for cmd.Parent().HasParent() {
		cmd = cmd.Parent()
	}
	return cmd.Name()
}

// normalizeArgs rewrites -name and -name=value to --name… when name is a
// long flag of the command args invoke: Go's flag package, which tcsctl
// used before cobra, accepted one dash, and scripts may still use it.
func normalizeArgs(root *cobra.Command, args []string) []string {
	root.InitDefaultHelpFlag()
	root.InitDefaultVersionFlag()
	cmd, _, err := root.Find(args)
	if err != nil {
		cmd = root
	}
	cmd.InitDefaultHelpFlag()
	out := make([]string, len(args))
	copy(out, args)
	for i, a := range args {
		if a == "--" {
			break
		}
		if len(a) < 3 || a[0] != '-' || a[1] == '-' {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if len(name) > 1 && (cmd.Flags().Lookup(name) != nil || cmd.InheritedFlags().Lookup(name) != nil) {
			out[i] = "-" + a
		}
	}
	return out
}

// suggest returns cobra's "did you mean" text for a mistyped subcommand of
// cmd.
func suggest(cmd *cobra.Command, typo string) string {
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	s := cmd.SuggestionsFor(typo)
	if len(s) == 0 {
		return ""
	}
	return "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
}

// action wraps a command's code as a cobra RunE: it marks the run as
// started (errors from here on are the command's, not usage) and passes the
// context.
func (e *env) action(f func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		e.ran = true
		return f(cmd.Context(), args)
	}
}

// exactArgs is cobra.ExactArgs with tcsctl's message.
func exactArgs(n int) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("want %d argument(s), got %d: %q", n, len(args), args)
		}
		return nil
	}
}

// noArgs refuses positional arguments.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	return nil
}

// subcommandsOnly is the RunE of a command that only groups subcommands:
// alone or with an unknown subcommand it is bad usage, with suggestions.
func subcommandsOnly(cmd *cobra.Command, args []string) error {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	if len(args) == 0 {
		return usagef("missing %s command: want %s", cmd.Name(), strings.Join(names, ", "))
	}
	return usagef("unknown %s command %q: want %s%s", cmd.Name(), args[0], strings.Join(names, ", "), suggest(cmd, args[0]))
}

// connFlags are the flags every command that reaches the system takes:
// where the catalog and the regions are, and how to authenticate. Each
// setting comes from its flag if given, else its environment variable, else
// the named context of the config file, else the default.
type connFlags struct {
	fs          *pflag.FlagSet
	context     string
	catalogURL  string
	token       string // the catalog's (admin or reader)
	lookupToken string // the regions' Lookup
	scanToken   string // the regions' ReplicaAdmin (verify, repair)
	regions     string
	tls         tlsOptions
	timeout     time.Duration
	getenv      func(string) string
	resolved    bool
}

const defaultCatalogURL = "http://127.0.0.1:8080"

func (c *connFlags) register(fs *pflag.FlagSet, getenv func(string) string) {
	c.fs = fs
	c.getenv = getenv
	fs.StringVar(&c.context, "context", "", "named context of the config file to take settings from (env TCSCTL_CONTEXT; default: its current-context)")
	fs.StringVar(&c.catalogURL, "catalog", defaultCatalogURL, "catalog admin REST API base URL (env TCS_CATALOG_URL)")
	// Tokens have no default, and the flags' defaults never hold one (so
	// -h prints no secret).
	fs.StringVar(&c.token, "token", "", "bearer token for the catalog: admin to write, reader to read (default: env TCS_ADMIN_TOKEN, else TCS_READER_TOKEN, else the context's)")
	fs.StringVar(&c.lookupToken, "lookup-token", "", "bearer token of role lookup for the regions' Lookup (default: env TCS_LOOKUP_TOKEN, else the context's)")
	fs.StringVar(&c.scanToken, "scan-token", "", "bearer token of role replica-scan for the regions' replica admin API, used by verify and repair (default: env TCS_SCAN_TOKEN, else the context's)")
	fs.StringVar(&c.regions, "regions", defaultRegions, "regions and their tcs gRPC addresses, REGION=HOST:PORT,… (env TCS_REGIONS)")
	fs.BoolVar(&c.tls.Insecure, "insecure", false, "plaintext gRPC to every region and allow an http:// catalog that is not on loopback: tokens cross the network in the clear (env TCS_INSECURE=true). Default: TLS to non-loopback regions, plaintext to loopback ones (unless --tls or --ca-file)")
	fs.BoolVar(&c.tls.Always, "tls", false, "TLS to loopback regions too")
	fs.StringVar(&c.tls.CAFile, "ca-file", "", "PEM CA bundle to verify the regions' (and an https catalog's) certificates; implies TLS (env TCS_CA_FILE)")
	fs.StringVar(&c.tls.CertFile, "cert", "", "PEM client certificate for mutual TLS (env TCS_CLIENT_CERT)")
	fs.StringVar(&c.tls.KeyFile, "key", "", "PEM private key of --cert (env TCS_CLIENT_KEY)")
	fs.StringVar(&c.tls.ServerName, "server-name", "", "server name to verify in certificates, if not the address's host")
	fs.DurationVar(&c.timeout, "timeout", 60*time.Second, "bound on each request")
	for _, name := range []string{"context", "catalog", "token", "lookup-token", "scan-token", "regions", "insecure", "tls", "ca-file", "cert", "key", "server-name", "timeout"} {
		_ = fs.SetAnnotation(name, connectionGroup, []string{"true"})
	}
}

// connectionGroup annotates the connection flags, which help lists apart.
const connectionGroup = "tcsctl_connection"

func init() {
	// flagUsages lists a command's own flags, or its connection flags.
	cobra.AddTemplateFunc("flagUsages", func(c *cobra.Command, connection bool) string {
		fs := pflag.NewFlagSet(c.Name(), pflag.ContinueOnError)
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if _, ok := f.Annotations[connectionGroup]; ok == connection {
				fs.AddFlag(f)
			}
		})
		return strings.TrimRight(fs.FlagUsages(), " \n")
	})
}

// usageTemplate is cobra's, with the connection flags listed apart from a
// command's own.
const usageTemplate = `Usage:{{if .Runnable}}
  {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} [command]{{end}}{{if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}{{$cmds := .Commands}}{{if eq (len .Groups) 0}}

Available Commands:{{range $cmds}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{else}}{{range $group := .Groups}}

{{.Title}}{{range $cmds}}{{if (and (eq .GroupID $group.ID) (or .IsAvailableCommand (eq .Name "help")))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if not .AllChildCommandsHaveGroup}}

Additional Commands:{{range $cmds}}{{if (and (eq .GroupID "") (or .IsAvailableCommand (eq .Name "help")))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}{{$own := flagUsages . false}}{{if $own}}

Flags:
{{$own}}{{end}}{{$conn := flagUsages . true}}{{if $conn}}

Connection flags (each: the flag, else its environment variable, else the context, else the default):
{{$conn}}{{end}}{{end}}{{if .HasAvailableInheritedFlags}}

Global Flags:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasHelpSubCommands}}

Additional help topics:{{range .Commands}}{{if .IsAdditionalHelpTopicCommand}}
  {{rpad .CommandPath .CommandPathPadding}} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableSubCommands}}

Use "{{.CommandPath}} [command] --help" for more information about a command.{{end}}
`

// resolve fills every setting not given as a flag from the environment,
// else from the config file's context (a token file is read only when
// neither the flag nor the environment gives that token).
func (c *connFlags) resolve() error {
	if c.resolved {
		return nil
	}
	c.resolved = true
	getenv := c.getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	// Without a flag set (a connFlags built in code), its fields are taken
	// as given, and only its empty tokens come from elsewhere.
	changed := func(name string) bool { return c.fs == nil || c.fs.Changed(name) }
	ctx, err := selectContext(getenv, c.context)
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = &contextConfig{}
	}
	str := func(dst *string, flag, envKey, fromCtx string) {
		switch {
		case changed(flag):
		case envKey != "" && getenv(envKey) != "":
			*dst = getenv(envKey)
		case fromCtx != "":
			*dst = fromCtx
		}
	}
	str(&c.catalogURL, "catalog", "TCS_CATALOG_URL", ctx.Catalog)
	str(&c.regions, "regions", "TCS_REGIONS", ctx.Regions)
	str(&c.tls.CAFile, "ca-file", "TCS_CA_FILE", ctx.CAFile)
	str(&c.tls.CertFile, "cert", "TCS_CLIENT_CERT", ctx.Cert)
	str(&c.tls.KeyFile, "key", "TCS_CLIENT_KEY", ctx.Key)
	str(&c.tls.ServerName, "server-name", "", ctx.ServerName)
	if !changed("insecure") {
		if v := getenv("TCS_INSECURE"); v != "" {
			c.tls.Insecure = v == "true"
		} else {
			c.tls.Insecure = ctx.Insecure
		}
	}
	if !changed("tls") {
		c.tls.Always = ctx.TLS
	}
	tok := func(dst *string, flag string, envKeys []string, ref *credentialRef, what string) error {
		if changed(flag) && (c.fs != nil || *dst != "") {
			return nil
		}
		for _, k := range envKeys {
			if v := getenv(k); v != "" {
				*dst = v
				return nil
			}
		}
		v, err := ref.read(getenv, what)
		*dst = v
		return err
	}
	if err := tok(&c.token, "token", []string{"TCS_ADMIN_TOKEN", "TCS_READER_TOKEN"}, ctx.Token, "token"); err != nil {
		return err
	}
	if err := tok(&c.lookupToken, "lookup-token", []string{"TCS_LOOKUP_TOKEN"}, ctx.LookupToken, "lookup-token"); err != nil {
		return err
	}
	return tok(&c.scanToken, "scan-token", []string{"TCS_SCAN_TOKEN"}, ctx.ScanToken, "scan-token")
}

// jobFlags are the flags of long-running commands.
type jobFlags struct {
	workers       int
	rate          float64
	checkpoint    string
	checkpointDir string // TCS_CHECKPOINT_DIR
	restart       bool
}

func (j *jobFlags) register(fs *pflag.FlagSet, getenv func(string) string, what string) {
	j.checkpointDir = getenv("TCS_CHECKPOINT_DIR")
	fs.IntVar(&j.workers, "workers", max(2, runtime.GOMAXPROCS(0)), "requests in flight at once")
	fs.Float64Var(&j.rate, "rate", 0, "at most this many "+what+" per second (0: no limit)")
	fs.StringVar(&j.checkpoint, "checkpoint", "", "checkpoint file for resuming (default: a file named after the work in TCS_CHECKPOINT_DIR, else the user cache dir's tcsctl/, else ./.tcsctl/; \"off\": none)")
	fs.BoolVar(&j.restart, "restart", false, "ignore a saved checkpoint and start from the beginning")
}

// stringList is a repeatable flag; each use may also hold a comma-separated
// list.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Type() string   { return "strings" }

func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

// confirmFlag registers --yes on a command that writes many tenants.
func confirmFlag(fs *pflag.FlagSet, yes *bool) {
	fs.BoolVarP(yes, "yes", "y", false, "do it without asking: the command writes more than one tenant, and asks for a confirmation on a terminal (without one, it refuses to start without --yes)")
}

// confirm asks, on a terminal, whether to go on with what (a sentence
// naming the operation); stdinIsData says stdin carries the command's input
// and cannot answer. Without a terminal it refuses unless yes: a script must
// say --yes. Nothing has been written when it refuses.
func (e *env) confirm(yes bool, what string, stdinIsData bool) error {
	if yes {
		return nil
	}
	if stdinIsData || e.isTerminal == nil || !e.isTerminal() {
		return usagef("%s: this writes more than one tenant, so it needs --yes when tcsctl cannot ask (stdin is not a terminal); nothing was changed", what)
	}
	fmt.Fprintf(e.stderr, "%s. Continue? [y/N] ", what)
	answer, err := bufio.NewReader(io.LimitReader(e.stdin, 64)).ReadString('\n')
	answer = strings.ToLower(strings.TrimSpace(answer))
	if answer == "y" || answer == "yes" {
		return nil
	}
	if err != nil && answer == "" {
		fmt.Fprintln(e.stderr)
	}
	return &exitCodeError{code: exitFinding, msg: "not confirmed; nothing was changed"}
}

// client is what a command talks to, built from connFlags.
type client struct {
	catalog *httpclient.Client
	dialer  *dialer
	regions []region
	timeout time.Duration
}

func (c *connFlags) client(e *env) (*client, error) {
	if err := c.resolve(); err != nil {
		return nil, err
	}
	regions, err := parseRegions(c.regions)
	if err != nil {
		return nil, err
	}
	if c.tls.Insecure && (c.tls.Always || c.tls.CAFile != "") {
		return nil, errors.New("--insecure excludes --tls and --ca-file")
	}
	if c.tls.CAFile != "" {
		c.tls.Always = true
	}
	if u, err := url.Parse(c.catalogURL); err == nil && u.Scheme == "http" && !isLoopback(u.Host) && !c.tls.Insecure {
		return nil, fmt.Errorf("--catalog %s: plaintext HTTP to a host that is not loopback would send the token in the clear: use https://, or --insecure", c.catalogURL)
	}
	hc := &http.Client{Timeout: c.timeout}
	if strings.HasPrefix(c.catalogURL, "https:") {
		cfg, err := c.tls.config()
		if err != nil {
			return nil, err
		}
		hc.Transport = &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 64}
	} else {
		hc.Transport = &http.Transport{MaxIdleConnsPerHost: 64, TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	}
	cat, err := httpclient.New(c.catalogURL, httpclient.WithToken(c.token), httpclient.WithHTTPClient(hc),
		httpclient.WithNoTokenHint("(tcsctl has no catalog token, and none by default: --token or TCS_ADMIN_TOKEN, or a token reference in the context)"))
	if err != nil { // New refuses only a URL that is not http(s)
		return nil, fmt.Errorf("--catalog %q: want an http:// or https:// URL", c.catalogURL)
	}
	d, err := newDialer(c.tls, c.lookupToken, c.scanToken)
	if err != nil {
		return nil, err
	}
	if c.tls.Insecure {
		var remote []string
		for _, r := range regions {
			if !isLoopback(r.Addr) {
				remote = append(remote, r.Name)
			}
		}
		if len(remote) > 0 {
			sort.Strings(remote)
			fmt.Fprintf(e.stderr, "tcsctl: warning: plaintext gRPC (--insecure) to non-loopback regions %s: tokens cross the network in the clear\n", strings.Join(remote, ", "))
		}
	}
	return &client{catalog: cat, dialer: d, regions: regions, timeout: c.timeout}, nil
}

func (c *client) Close() { c.dialer.Close() }

// completeContextFlags offers the config file's contexts for --context, on
// every command that has it.
func completeContextFlags(e *env, cmd *cobra.Command) {
	if cmd.Flags().Lookup("context") != nil {
		_ = cmd.RegisterFlagCompletionFunc("context", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			cfg, err := loadConfig(configPath(e.getenv))
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return cfg.names(), cobra.ShellCompDirectiveNoFileComp
		})
	}
	for _, c := range cmd.Commands() {
		completeContextFlags(e, c)
	}
}
