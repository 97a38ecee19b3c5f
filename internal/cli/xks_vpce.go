package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keyhold/keyhold/internal/datadir"
	"github.com/keyhold/keyhold/internal/keystore/xksstore"
	"github.com/keyhold/keyhold/internal/store"
)

// vpceCommand is `keyhold vpce register|list|remove`: the VPC endpoint
// services external key stores with VPC_ENDPOINT_SERVICE connectivity name.
// Each subcommand takes only its own flags.
func vpceCommand(stdout, _ io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vpce",
		Short: "VPC endpoint services that external key stores can name",
		Long: `keyhold has no VPC: an external key store with VPC_ENDPOINT_SERVICE
connectivity reaches its XKS proxy through a VPC endpoint service registered
here (in keyhold's store in DATA_DIR, or KEYHOLD_DATABASE_URL's database; a
running keyhold reads it on every use).

  keyhold vpce register --data-dir DIR --service-name com.amazonaws.vpce.REGION.vpce-svc-HEX \
      --endpoint https://127.0.0.1:8443 --private-dns-name xks.example.internal
  keyhold vpce list --data-dir DIR
  keyhold vpce remove --data-dir DIR --service-name NAME`,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	dataDirFlag := func(fs *pflag.FlagSet, p *string) {
		def := os.Getenv("KEYHOLD_DATA_DIR")
		if def == "" {
			def = DefaultDataDir
		}
		fs.StringVar(p, "data-dir", def, "keyhold's data directory (env KEYHOLD_DATA_DIR)")
	}

	var reg struct {
		dataDir, name, endpoint, dns, owner, region, zones, principals string
		acceptance, unverified                                         bool
	}
	register := &cobra.Command{
		Use:   "register --service-name NAME --endpoint URL --private-dns-name HOST [flags]",
		Short: "Register (or replace) a VPC endpoint service",
		Long: `Register a VPC endpoint service, or replace the one of that name: the
endpoint keyhold dials for it (the XKS proxy behind the service's load
balancer) and the private DNS name external key stores use as their
XksProxyUriEndpoint host.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := xksstore.VPCEndpointService{ServiceName: reg.name, Owner: reg.owner, Endpoint: reg.endpoint, PrivateDNSName: reg.dns,
				PrivateDNSVerified: !reg.unverified, AcceptanceRequired: reg.acceptance,
				AvailabilityZones: splitList(reg.zones), AllowedPrincipals: splitList(reg.principals)}
			if len(v.AvailabilityZones) == 0 {
				v.AvailabilityZones = []string{reg.region + "a", reg.region + "b"}
			}
			if len(v.AllowedPrincipals) == 0 {
				v.AllowedPrincipals = []string{xksstore.KMSServicePrincipal(reg.region)}
			}
			return withVPCEStore(cmd.Context(), reg.dataDir, func(db store.Store) error {
				if err := xksstore.RegisterVPCEndpointService(cmd.Context(), db, v); err != nil {
					return fmt.Errorf("vpce register: %w", err)
				}
				fmt.Fprintf(stdout, "registered %s -> %s (private DNS name %s)\n", v.ServiceName, v.Endpoint, v.PrivateDNSName)
				return nil
			})
		},
	}
	fs := register.Flags()
	dataDirFlag(fs, &reg.dataDir)
	fs.StringVar(&reg.name, "service-name", "", "the VPC endpoint service name, com.amazonaws.vpce.REGION.vpce-svc-HEX (required)")
	fs.StringVar(&reg.endpoint, "endpoint", "", "https://host[:port] keyhold dials (the proxy behind the service's load balancer) (required)")
	fs.StringVar(&reg.dns, "private-dns-name", "", "the service's private DNS name (the store's XksProxyUriEndpoint host) (required)")
	fs.StringVar(&reg.owner, "owner", "", "the account that owns the service (default: the account of the store that names it)")
	fs.StringVar(&reg.region, "region", "us-east-1", "the region of keyhold (for the default zones and allowed principal)")
	fs.StringVar(&reg.zones, "zones", "", "comma-separated Availability Zones of the load balancer (default REGION-a,REGION-b)")
	fs.StringVar(&reg.principals, "allowed-principals", "", "comma-separated allowed principals (default cks.kms.REGION.amazonaws.com)")
	fs.BoolVar(&reg.acceptance, "acceptance-required", false, "the service requires acceptance of endpoint connections (KMS cannot use it)")
	fs.BoolVar(&reg.unverified, "unverified-dns", false, "the private DNS name is not verified (KMS cannot use it)")
	for _, f := range []string{"service-name", "endpoint", "private-dns-name"} {
		register.MarkFlagRequired(f)
	}

	var listDir string
	list := &cobra.Command{
		Use:   "list",
		Short: "List the registered VPC endpoint services (JSON)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withVPCEStore(cmd.Context(), listDir, func(db store.Store) error {
				svcs, err := xksstore.ListVPCEndpointServices(cmd.Context(), db)
				if err != nil {
					return err
				}
				if svcs == nil {
					svcs = []xksstore.VPCEndpointService{}
				}
				b, _ := json.MarshalIndent(svcs, "", "  ")
				_, err = fmt.Fprintln(stdout, string(b))
				return err
			})
		},
	}
	dataDirFlag(list.Flags(), &listDir)

	var rmDir, rmName string
	remove := &cobra.Command{
		Use:   "remove --service-name NAME",
		Short: "Remove a registered VPC endpoint service",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withVPCEStore(cmd.Context(), rmDir, func(db store.Store) error {
				err := xksstore.RemoveVPCEndpointService(cmd.Context(), db, rmName)
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("vpce remove: %q is not registered", rmName)
				}
				return err
			})
		},
	}
	dataDirFlag(remove.Flags(), &rmDir)
	remove.Flags().StringVar(&rmName, "service-name", "", "the VPC endpoint service name (required)")
	remove.MarkFlagRequired("service-name")

	cmd.AddCommand(register, list, remove)
	return cmd
}

// withVPCEStore runs fn on the database the server uses
// (KEYHOLD_DATABASE_URL, or the data directory's SQLite, which lets this
// second process write it); the server reads services from it on every use.
func withVPCEStore(ctx context.Context, dataDir string, fn func(store.Store) error) error {
	dir, err := datadir.Abs(dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	db, err := OpenDatabase(ctx, databaseURLFromEnv(), dir, 0, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(db)
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
