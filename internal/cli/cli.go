// Package cli holds keyhold's subcommands (serve, xks-proxy, hsm, admin,
// vpce, audit, bench, config, version, completion and the hidden
// hsm-daemon) on cobra. It is the composition root: it builds the domain,
// its stores and drivers, the listener, logging and metrics. cmd/keyhold
// only calls Main.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keyhold/keyhold/internal/bench"
	"github.com/keyhold/keyhold/internal/hsm"
)

// usageError is a command-line mistake: exit status 2, as flag does.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// noArgs rejects positional arguments: a stray word must not silently drop
// the flags after it.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if cmd.HasSubCommands() {
		return usageError{fmt.Errorf("unknown command %q for %q (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())}
	}
	return usageError{fmt.Errorf("unexpected argument %q: %s takes only flags (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())}
}

// DefaultMemoryLimit is the Go runtime's soft memory limit unless GOMEMLIMIT
// is set.
const DefaultMemoryLimit = 224 << 20

// Main runs keyhold with args (without the program name) and returns the
// process exit code: 0 success (and --help), 1 failure, 2 usage error.
func Main(args []string, stdout, stderr io.Writer) int {
	if os.Getenv("GOGC") == "" {
		// keyhold's heap is small and its requests allocate short-lived
		// garbage: collecting at 5x the live heap instead of 2x halves the
		// GC's CPU (measured: +40% Encrypt throughput on 2 cores). GOGC
		// still overrides.
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// GOGC=400 lets the heap grow to 5x the live heap: with a million
		// keys (caches full, 60+ MB live) that is over 1 GB of RSS. A soft
		// limit makes the GC collect as often as needed to stay under it
		// once the heap gets there, and changes nothing below it.
		// GOMEMLIMIT still overrides.
		debug.SetMemoryLimit(DefaultMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return MainContext(ctx, args, stdout, stderr)
}

// MainContext is Main stopping when ctx is done (instead of on SIGTERM).
func MainContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRootCommand(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "keyhold: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") ||
		strings.HasPrefix(err.Error(), "unknown shorthand flag") || strings.HasPrefix(err.Error(), "required flag(s)") {
		return 2
	}
	return 1
}

// NewRootCommand builds the command tree.
func NewRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "keyhold",
		Short: "A self-hosted, AWS-KMS-compatible key management service",
		Long: `keyhold: a self-hosted, AWS-KMS-compatible key management service.

It speaks the AWS KMS API (and the CloudHSM control plane, IAM/STS and
CloudTrail LookupEvents) with SigV4, keeps keys wrapped by a root key, in
HSM clusters (PKCS#11) or behind an XKS proxy.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddGroup(&cobra.Group{ID: "run", Title: "Run:"}, &cobra.Group{ID: "manage", Title: "Manage:"}, &cobra.Group{ID: "info", Title: "Information:"})
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("run", serveCommand(stdout, stderr), xksProxyCommand(stdout, stderr), benchCommand(stdout, stderr))
	add("manage", hsmCommand(stdout, stderr), adminCommand(stdout, stderr), vpceCommand(stdout, stderr), auditCommand(stdout, stderr))
	add("info", versionCommand(stdout), configCommand(stdout))
	root.AddCommand(hsmDaemonCommand(stdout, stderr))
	root.SetCompletionCommandGroupID("info")
	root.SetHelpCommandGroupID("info")
	// Every command rejects stray arguments unless it says otherwise.
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Args == nil {
			c.Args = noArgs
		}
		c.SilenceUsage, c.SilenceErrors = true, true
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return root
}

// passthrough wraps a subcommand that still parses its own flags with the
// standard flag package: cobra shows its help text, the command parses the
// rest. flag.ErrHelp (from -h inside it) is success.
func passthrough(use, short, long string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:                use,
		Short:              short,
		Long:               long,
		DisableFlagParsing: true,
		Args:               cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
				return cmd.Help()
			}
			err := run(cmd.Context(), args, stdout, stderr)
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			if err != nil && (strings.Contains(err.Error(), "flag provided but not defined") || strings.Contains(err.Error(), "unexpected arguments")) {
				return usageError{err}
			}
			return err
		},
	}
	return cmd
}

func benchCommand(stdout, stderr io.Writer) *cobra.Command {
	var f *bench.Flags
	cmd := &cobra.Command{
		Use:   "bench --endpoint URL [flags]",
		Short: "Load generator that signs like an SDK; prints throughput and latency",
		Long: `keyhold bench: a load generator that signs requests like an SDK and prints
throughput and latency percentiles. It works against any KMS endpoint
(keyhold, moto, LocalStack) and, with --op xks-encrypt, an XKS proxy. It
refuses an endpoint that is not on this machine unless --allow-remote.

  keyhold bench --endpoint http://127.0.0.1:4599 --credentials-file keyhold-data/credentials \
      --op encrypt --concurrency 16 --duration 10s`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.Run(cmd.Context(), stdout, stderr)
		},
	}
	f = bench.AddFlags(cmd.Flags())
	cmd.MarkFlagRequired("endpoint")
	return cmd
}

func hsmCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hsm",
		Short: "HSM owner's tools on a cluster: activate, crypto users, backups",
		Long: `keyhold hsm: what an HSM owner does on the cluster itself (like cloudhsm_mgmt_util).
They work whether or not the server runs, on the data directory's store (or
KEYHOLD_DATABASE_URL's database).

  keyhold hsm activate --cluster-id ID --co-password P
  keyhold hsm create-user --cluster-id ID --username kmsuser --password P --co-password C`,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	for _, sub := range hsm.OwnerSubcommands {
		var f hsm.OwnerFlags
		c := &cobra.Command{
			Use:   sub.Name,
			Short: sub.Short,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return hsm.RunOwner(cmd.Context(), sub.Name, f, stdout, stderr, OpenRecords)
			},
		}
		if err := f.Add(c.Flags(), sub.Name); err != nil {
			panic(err) // the table and Add disagree: a programming error
		}
		if c.Flags().Lookup("cluster-id") != nil {
			c.MarkFlagRequired("cluster-id")
		}
		cmd.AddCommand(c)
	}
	return cmd
}

func hsmDaemonCommand(stdout, stderr io.Writer) *cobra.Command {
	c := passthrough("hsm-daemon", "one HSM process (started by keyhold itself)", "", hsm.DaemonCommand, stdout, stderr)
	c.Hidden = true
	c.RunE = func(cmd *cobra.Command, args []string) error {
		return hsm.DaemonCommand(cmd.Context(), args, stdout, stderr)
	}
	return c
}

// versionCommand prints what was built: version and commit from -ldflags,
// the rest from the binary's build information.
func versionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print keyhold's version, commit, Go version and build flags",
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprint(stdout, VersionText())
			return nil
		},
	}
}

// Set at release build time:
//
//	go build -ldflags "-X github.com/keyhold/keyhold/internal/cli.version=v1.2.3 -X github.com/keyhold/keyhold/internal/cli.commit=$(git rev-parse HEAD)"
var (
	version = "dev"
	commit  = ""
)

// VersionText is `keyhold version`'s output.
func VersionText() string {
	var b strings.Builder
	fmt.Fprintf(&b, "keyhold %s\n", version)
	c := commit
	info, ok := debug.ReadBuildInfo()
	settings := map[string]string{}
	if ok {
		for _, s := range info.Settings {
			settings[s.Key] = s.Value
		}
		if c == "" {
			c = settings["vcs.revision"]
		}
	}
	if c == "" {
		c = "unknown"
	}
	if settings["vcs.modified"] == "true" {
		c += " (modified)"
	}
	fmt.Fprintf(&b, "commit:     %s\n", c)
	goVersion := "unknown"
	if ok {
		goVersion = info.GoVersion
	}
	fmt.Fprintf(&b, "go:         %s\n", goVersion)
	fmt.Fprintf(&b, "platform:   %s/%s\n", settings["GOOS"], settings["GOARCH"])
	for _, k := range []string{"CGO_ENABLED", "-tags", "-trimpath", "-ldflags", "-buildmode", "-race"} {
		if v, ok := settings[k]; ok {
			fmt.Fprintf(&b, "build %-11s %s\n", k+":", v)
		}
	}
	return b.String()
}

func configCommand(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Configuration files: print a complete commented example",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	var which string
	example := &cobra.Command{
		Use:   "example",
		Short: "Print a complete, commented configuration file",
		Long: `Print a complete, commented configuration file for keyhold serve (default)
or keyhold xks-proxy (--for xks-proxy). Every line is commented out and
shows the default; enable what you change.

  keyhold config example > /etc/keyhold/keyhold.conf
  keyhold serve --config /etc/keyhold/keyhold.conf`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch which {
			case "serve":
				return serveSettings(&serveOptions{}).WriteExample(stdout)
			case "xks-proxy":
				return xksSettings(&xksOptions{}).WriteExample(stdout)
			}
			return usageError{fmt.Errorf("--for %q: want serve or xks-proxy", which)}
		},
	}
	example.Flags().StringVar(&which, "for", "serve", "the command the file is for: serve or xks-proxy")
	cmd.AddCommand(example)
	return cmd
}

// flagNames lists a command's flag names (for tests of the CLI surface).
func flagNames(fs *pflag.FlagSet) []string {
	var out []string
	fs.VisitAll(func(f *pflag.Flag) { out = append(out, f.Name) })
	return out
}
