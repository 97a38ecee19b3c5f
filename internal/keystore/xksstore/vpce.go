package xksstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/store"
)

// VPCEndpointServices looks registered services up (store.Store does).
type VPCEndpointServices interface {
	GetVPCEndpointService(ctx context.Context, name string) (store.VPCEndpointService, error)
}

// VPCEndpointService is one registered VPC endpoint service. keyhold has
// no VPC: an external key store with VPC_ENDPOINT_SERVICE connectivity
// reaches its proxy through the endpoint registered (in the store, by
// `keyhold vpce`) under the service's name, and every requirement AWS
// checks on a real endpoint service is a field that can be got wrong.
type VPCEndpointService struct {
	// ServiceName is com.amazonaws.vpce.<region>.vpce-svc-<hex>.
	ServiceName string `json:"serviceName"`
	// Owner is the account that owns the service; empty means the account
	// of the key store that names it.
	Owner string `json:"owner,omitempty"`
	// Endpoint is what keyhold dials: https://host[:port] of the proxy
	// behind the service's load balancer. The proxy's certificate must be
	// valid for this host.
	Endpoint string `json:"endpoint"`
	// PrivateDNSName must equal the host of the store's XksProxyUriEndpoint,
	// and be verified.
	PrivateDNSName     string `json:"privateDnsName"`
	PrivateDNSVerified bool   `json:"privateDnsVerified"`
	// AllowedPrincipals must include cks.kms.<region>.amazonaws.com (or *)
	// for KMS to find the service.
	AllowedPrincipals []string `json:"allowedPrincipals"`
	// AcceptanceRequired must be false: KMS cannot accept its own
	// endpoint connection.
	AcceptanceRequired bool `json:"acceptanceRequired"`
	// AvailabilityZones of the load balancer: at least two.
	AvailabilityZones []string `json:"availabilityZones"`
}

var vpceNameRE = regexp.MustCompile(`^(com|eu)\.amazonaws\.vpce\.(([a-z]+-){2,3}\d+)\.vpce-svc-[0-9a-z]+$`)

// KMSServicePrincipal is the principal a VPC endpoint service must allow.
func KMSServicePrincipal(region string) string { return "cks.kms." + region + ".amazonaws.com" }

func (v VPCEndpointService) record() store.VPCEndpointService {
	return store.VPCEndpointService{ServiceName: v.ServiceName, Owner: v.Owner, Endpoint: v.Endpoint, PrivateDNSName: v.PrivateDNSName,
		PrivateDNSVerified: v.PrivateDNSVerified, AllowedPrincipals: v.AllowedPrincipals, AcceptanceRequired: v.AcceptanceRequired,
		AvailabilityZones: v.AvailabilityZones}
}

func vpceFromRecord(r store.VPCEndpointService) VPCEndpointService {
	return VPCEndpointService{ServiceName: r.ServiceName, Owner: r.Owner, Endpoint: r.Endpoint, PrivateDNSName: r.PrivateDNSName,
		PrivateDNSVerified: r.PrivateDNSVerified, AllowedPrincipals: r.AllowedPrincipals, AcceptanceRequired: r.AcceptanceRequired,
		AvailabilityZones: r.AvailabilityZones}
}

// RegisterVPCEndpointService validates v and stores it, replacing a
// service of the same name. A running keyhold reads the store on every use,
// so `keyhold vpce` may call this on the database the server uses.
func RegisterVPCEndpointService(ctx context.Context, st store.Store, v VPCEndpointService) error {
	if err := v.Validate(); err != nil {
		return err
	}
	return st.PutVPCEndpointService(ctx, v.record())
}

// ReplaceVPCEndpointServices makes svcs the whole registry, in one
// transaction.
func ReplaceVPCEndpointServices(ctx context.Context, st store.Store, svcs []VPCEndpointService) error {
	for _, v := range svcs {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	return st.Tx(ctx, func(tx store.Store) error {
		old, err := tx.ListVPCEndpointServices(ctx)
		if err != nil {
			return err
		}
		for _, o := range old {
			if err := tx.DeleteVPCEndpointService(ctx, o.ServiceName); err != nil {
				return err
			}
		}
		for _, v := range svcs {
			if err := tx.PutVPCEndpointService(ctx, v.record()); err != nil {
				return err
			}
		}
		return nil
	})
}

// ListVPCEndpointServices returns the registry, by name.
func ListVPCEndpointServices(ctx context.Context, st store.Store) ([]VPCEndpointService, error) {
	rs, err := st.ListVPCEndpointServices(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]VPCEndpointService, 0, len(rs))
	for _, r := range rs {
		out = append(out, vpceFromRecord(r))
	}
	return out, nil
}

// RemoveVPCEndpointService deletes a registered service; store.ErrNotFound
// when there is none of that name.
func RemoveVPCEndpointService(ctx context.Context, st store.Store, name string) error {
	return st.DeleteVPCEndpointService(ctx, name)
}

// Validate checks the shape of a registry entry (not whether KMS could use it).
func (v VPCEndpointService) Validate() error {
	if !vpceNameRE.MatchString(v.ServiceName) || len(v.ServiceName) > 64 {
		return fmt.Errorf("service name %q must look like com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0", v.ServiceName)
	}
	if v.Owner != "" && (len(v.Owner) != 12 || strings.Trim(v.Owner, "0123456789") != "") {
		return fmt.Errorf("owner %q must be a 12-digit account id", v.Owner)
	}
	u, err := url.Parse(v.Endpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("endpoint %q must be https://host[:port]", v.Endpoint)
	}
	if v.PrivateDNSName == "" || strings.ContainsAny(v.PrivateDNSName, "/:") {
		return fmt.Errorf("private DNS name %q must be a host name", v.PrivateDNSName)
	}
	return nil
}

// vpceRegion is the region in a service name.
func vpceRegion(name string) string {
	m := vpceNameRE.FindStringSubmatch(name)
	if m == nil {
		return ""
	}
	return m[2]
}

// endpointHost is the host of an https://host[:port] endpoint, lower case.
func endpointHost(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Hostname())
}

// findVPCEndpointService looks a store's service up as KMS would: NotFound
// when the name is unknown in that owner's account and region or KMS may not
// use it; InvalidConfiguration when KMS may use it but it does not meet the
// requirements. account is the store's account.
func (d *Driver) findVPCEndpointService(ctx context.Context, account string, cfg keystore.Config) (VPCEndpointService, error) {
	name := cfg.XksProxyVpcEndpointServiceName
	owner := cfg.XksProxyVpcEndpointServiceOwner
	if owner == "" {
		owner = account
	}
	notFound := func(why string) error {
		return keystore.Errorf(codeVpcEndpointSvcNotFound, "VPC endpoint service %s was not found in account %s in %s, or KMS is not allowed to use it (%s).", name, owner, d.cfg.Region, why)
	}
	if vpceRegion(name) != d.cfg.Region {
		return VPCEndpointService{}, notFound("it is not in this Region")
	}
	if d.cfg.Services == nil {
		return VPCEndpointService{}, notFound("no such service")
	}
	rec, err := d.cfg.Services.GetVPCEndpointService(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return VPCEndpointService{}, notFound("no such service")
	}
	if err != nil {
		return VPCEndpointService{}, fmt.Errorf("xksstore: VPC endpoint service registry: %w", err)
	}
	found := vpceFromRecord(rec)
	svc := &found
	svcOwner := svc.Owner
	if svcOwner == "" {
		svcOwner = account
	}
	if svcOwner != owner {
		return VPCEndpointService{}, notFound("it belongs to another account")
	}
	allowed := false
	for _, p := range svc.AllowedPrincipals {
		allowed = allowed || p == "*" || p == KMSServicePrincipal(d.cfg.Region)
	}
	if !allowed {
		return VPCEndpointService{}, notFound("its allowed principals do not include " + KMSServicePrincipal(d.cfg.Region))
	}
	invalid := func(format string, args ...any) error {
		return keystore.Errorf(codeVpcEndpointSvcInvCfg, "VPC endpoint service %s does not meet the requirements for an external key store: "+format, append([]any{name}, args...)...)
	}
	if svc.AcceptanceRequired {
		return VPCEndpointService{}, invalid("it requires acceptance of endpoint connections.")
	}
	zones := map[string]bool{}
	for _, z := range svc.AvailabilityZones {
		zones[z] = true
	}
	if len(zones) < 2 {
		return VPCEndpointService{}, invalid("its load balancer must be in at least two Availability Zones; it is in %d.", len(zones))
	}
	if !strings.EqualFold(svc.PrivateDNSName, endpointHost(cfg.XksProxyUriEndpoint)) {
		return VPCEndpointService{}, invalid("its private DNS name %s does not match the XksProxyUriEndpoint host %s.", svc.PrivateDNSName, endpointHost(cfg.XksProxyUriEndpoint))
	}
	if !svc.PrivateDNSVerified {
		return VPCEndpointService{}, invalid("its private DNS name %s is not verified.", svc.PrivateDNSName)
	}
	return *svc, nil
}

// vpceConnectionCode is the ConnectionErrorCode for a failed lookup.
func vpceConnectionCode(err error) string {
	var e *keystore.Error
	if errors.As(err, &e) {
		switch e.Code {
		case codeVpcEndpointSvcNotFound:
			return "XKS_VPC_ENDPOINT_SERVICE_NOT_FOUND"
		case codeVpcEndpointSvcInvCfg:
			return "XKS_VPC_ENDPOINT_SERVICE_INVALID_CONFIGURATION"
		}
	}
	return "INTERNAL_ERROR"
}
