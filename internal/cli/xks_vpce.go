package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/keyhold/keyhold/internal/datadir"
	"github.com/keyhold/keyhold/internal/keystore/xksstore"
	"github.com/keyhold/keyhold/internal/store"
)

const vpceUsage = `usage: keyhold vpce register|list|remove [flags]

keyhold has no VPC: an external key store with VPC_ENDPOINT_SERVICE
connectivity reaches its XKS proxy through a VPC endpoint service registered
here (in keyhold's store in DATA_DIR; a running keyhold reads it on every use).

  keyhold vpce register --data-dir DIR --service-name com.amazonaws.vpce.REGION.vpce-svc-HEX \
      --endpoint https://127.0.0.1:8443 --private-dns-name xks.example.internal \
      [--owner ACCOUNT] [--region REGION] [--zones REGION-a,REGION-b] [--allowed-principals P,...]
      [--acceptance-required] [--unverified-dns]
  keyhold vpce list --data-dir DIR
  keyhold vpce remove --data-dir DIR --service-name NAME
`

// VPCE runs `keyhold vpce ...`; args exclude "vpce".
func VPCE(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, vpceUsage)
		if len(args) == 0 {
			return errors.New("vpce: a subcommand is required")
		}
		return nil
	}
	fs := flag.NewFlagSet("vpce "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, vpceUsage); fs.PrintDefaults() }
	def := os.Getenv("KEYHOLD_DATA_DIR")
	if def == "" {
		def = DefaultDataDir
	}
	dataDir := fs.String("data-dir", def, "keyhold's data directory")
	name := fs.String("service-name", "", "the VPC endpoint service name")
	var (
		endpoint, dns, owner, region, zones, principals *string
		acceptance, unverified                          *bool
	)
	if args[0] == "register" {
		endpoint = fs.String("endpoint", "", "https://host[:port] keyhold dials (the proxy behind the service's load balancer)")
		dns = fs.String("private-dns-name", "", "the service's private DNS name (the store's XksProxyUriEndpoint host)")
		owner = fs.String("owner", "", "the account that owns the service (default: the account of the store that names it)")
		region = fs.String("region", "us-east-1", "the region of keyhold (for the default zones and allowed principal)")
		zones = fs.String("zones", "", "comma-separated Availability Zones of the load balancer (default REGION-a,REGION-b)")
		principals = fs.String("allowed-principals", "", "comma-separated allowed principals (default cks.kms.REGION.amazonaws.com)")
		acceptance = fs.Bool("acceptance-required", false, "the service requires acceptance of endpoint connections (KMS cannot use it)")
		unverified = fs.Bool("unverified-dns", false, "the private DNS name is not verified (KMS cannot use it)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("vpce %s: unexpected arguments %v", args[0], fs.Args())
	}
	switch args[0] {
	case "list", "remove", "register":
	default:
		return fmt.Errorf("vpce: unknown subcommand %q", args[0])
	}
	dir, err := datadir.Abs(*dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// The database the server uses (KEYHOLD_DATABASE_URL, or SQLite, which
	// lets this second process write it); the server reads services from
	// it on every use.
	db, err := OpenDatabase(ctx, databaseURLFromEnv(), dir, 0, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	svcs, err := xksstore.ListVPCEndpointServices(ctx, db)
	if err != nil {
		return err
	}
	switch args[0] {
	case "list":
		if svcs == nil {
			svcs = []xksstore.VPCEndpointService{}
		}
		b, _ := json.MarshalIndent(svcs, "", "  ")
		_, err := fmt.Fprintln(stdout, string(b))
		return err
	case "remove":
		err := xksstore.RemoveVPCEndpointService(ctx, db, *name)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("vpce remove: %q is not registered", *name)
		}
		return err
	case "register":
		split := func(s string) []string {
			var out []string
			for _, f := range strings.Split(s, ",") {
				if f = strings.TrimSpace(f); f != "" {
					out = append(out, f)
				}
			}
			return out
		}
		v := xksstore.VPCEndpointService{ServiceName: *name, Owner: *owner, Endpoint: *endpoint, PrivateDNSName: *dns,
			PrivateDNSVerified: !*unverified, AcceptanceRequired: *acceptance,
			AvailabilityZones: split(*zones), AllowedPrincipals: split(*principals)}
		if len(v.AvailabilityZones) == 0 {
			v.AvailabilityZones = []string{*region + "a", *region + "b"}
		}
		if len(v.AllowedPrincipals) == 0 {
			v.AllowedPrincipals = []string{xksstore.KMSServicePrincipal(*region)}
		}
		if err := xksstore.RegisterVPCEndpointService(ctx, db, v); err != nil {
			return fmt.Errorf("vpce register: %w", err)
		}
		fmt.Fprintf(stdout, "registered %s -> %s (private DNS name %s)\n", v.ServiceName, v.Endpoint, v.PrivateDNSName)
		return nil
	}
	return fmt.Errorf("vpce: unknown subcommand %q", args[0])
}
