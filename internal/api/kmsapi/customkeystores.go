package kmsapi

import (
	"context"

	"github.com/keyhold/keyhold/internal/kms"
)

type xksCredential struct {
	AccessKeyId        string
	RawSecretAccessKey string
}

type createCustomKeyStoreIn struct {
	CustomKeyStoreName               string
	CloudHsmClusterId                string
	TrustAnchorCertificate           string
	KeyStorePassword                 string
	CustomKeyStoreType               string
	XksProxyUriEndpoint              string
	XksProxyUriPath                  string
	XksProxyVpcEndpointServiceName   string
	XksProxyVpcEndpointServiceOwner  string
	XksProxyAuthenticationCredential *xksCredential
	XksProxyConnectivity             string
}

type createCustomKeyStoreOut struct{ CustomKeyStoreId string }

func (a *API) createCustomKeyStore(ctx context.Context, c kms.Request, in *createCustomKeyStoreIn) (any, error) {
	ki := kms.CreateCustomKeyStoreInput{Name: in.CustomKeyStoreName, Type: in.CustomKeyStoreType,
		CloudHsmClusterID: in.CloudHsmClusterId, TrustAnchorCertificate: in.TrustAnchorCertificate, KeyStorePassword: in.KeyStorePassword,
		XksProxyUriEndpoint: in.XksProxyUriEndpoint, XksProxyUriPath: in.XksProxyUriPath, XksProxyConnectivity: in.XksProxyConnectivity,
		XksProxyVpcEndpointServiceName: in.XksProxyVpcEndpointServiceName, XksProxyVpcEndpointServiceOwner: in.XksProxyVpcEndpointServiceOwner}
	if in.XksProxyAuthenticationCredential != nil {
		ki.XksAccessKeyID, ki.XksSecretAccessKey = in.XksProxyAuthenticationCredential.AccessKeyId, in.XksProxyAuthenticationCredential.RawSecretAccessKey
	}
	id, err := a.svc.CreateCustomKeyStore(ctx, c, ki)
	if err != nil {
		return nil, err
	}
	return createCustomKeyStoreOut{id}, nil
}

type customKeyStoreIDIn struct{ CustomKeyStoreId string }

func (a *API) connectCustomKeyStore(ctx context.Context, c kms.Request, in *customKeyStoreIDIn) (any, error) {
	return empty{}, a.svc.ConnectCustomKeyStore(ctx, c, in.CustomKeyStoreId)
}

func (a *API) disconnectCustomKeyStore(ctx context.Context, c kms.Request, in *customKeyStoreIDIn) (any, error) {
	return empty{}, a.svc.DisconnectCustomKeyStore(ctx, c, in.CustomKeyStoreId)
}

func (a *API) deleteCustomKeyStore(ctx context.Context, c kms.Request, in *customKeyStoreIDIn) (any, error) {
	return empty{}, a.svc.DeleteCustomKeyStore(ctx, c, in.CustomKeyStoreId)
}

type describeCustomKeyStoresIn struct {
	CustomKeyStoreId   string
	CustomKeyStoreName string
	Limit              int
	Marker             string
}

type xksProxyConfiguration struct {
	Connectivity            string  `json:",omitempty"`
	AccessKeyId             string  `json:",omitempty"`
	UriEndpoint             string  `json:",omitempty"`
	UriPath                 string  `json:",omitempty"`
	VpcEndpointServiceName  *string `json:",omitempty"`
	VpcEndpointServiceOwner *string `json:",omitempty"`
}

type customKeyStoresListEntry struct {
	CustomKeyStoreId       string
	CustomKeyStoreName     string
	CustomKeyStoreType     string
	CloudHsmClusterId      *string `json:",omitempty"`
	TrustAnchorCertificate *string `json:",omitempty"`
	ConnectionState        string
	ConnectionErrorCode    *string `json:",omitempty"`
	CreationDate           *epoch
	XksProxyConfiguration  *xksProxyConfiguration `json:",omitempty"`
}

type describeCustomKeyStoresOut struct {
	CustomKeyStores []customKeyStoresListEntry
	NextMarker      *string `json:",omitempty"`
	Truncated       bool
}

func (a *API) describeCustomKeyStores(ctx context.Context, c kms.Request, in *describeCustomKeyStoresIn) (any, error) {
	stores, p, err := a.svc.DescribeCustomKeyStores(ctx, c, in.CustomKeyStoreId, in.CustomKeyStoreName, in.Limit, in.Marker)
	if err != nil {
		return nil, err
	}
	out := describeCustomKeyStoresOut{CustomKeyStores: make([]customKeyStoresListEntry, len(stores)), NextMarker: strp(p.NextMarker), Truncated: p.Truncated}
	for i, s := range stores {
		e := customKeyStoresListEntry{CustomKeyStoreId: s.ID, CustomKeyStoreName: s.Name, CustomKeyStoreType: s.Type,
			CloudHsmClusterId: strp(s.CloudHsmClusterID), TrustAnchorCertificate: strp(s.TrustAnchor),
			ConnectionState: s.ConnectionState, ConnectionErrorCode: strp(s.ConnectionErrorCode), CreationDate: toEpoch(s.Created)}
		if s.Xks != nil {
			e.XksProxyConfiguration = &xksProxyConfiguration{Connectivity: s.Xks.Connectivity, AccessKeyId: s.Xks.AccessKeyID,
				UriEndpoint: s.Xks.UriEndpoint, UriPath: s.Xks.UriPath, VpcEndpointServiceName: strp(s.Xks.VpcEndpointServiceName),
				VpcEndpointServiceOwner: strp(s.Xks.VpcEndpointServiceOwner)}
		}
		out.CustomKeyStores[i] = e
	}
	return out, nil
}

type updateCustomKeyStoreIn struct {
	CustomKeyStoreId                 string
	NewCustomKeyStoreName            *string
	KeyStorePassword                 *string
	CloudHsmClusterId                *string
	XksProxyUriEndpoint              *string
	XksProxyUriPath                  *string
	XksProxyVpcEndpointServiceName   *string
	XksProxyVpcEndpointServiceOwner  *string
	XksProxyAuthenticationCredential *xksCredential
	XksProxyConnectivity             *string
}

func (a *API) updateCustomKeyStore(ctx context.Context, c kms.Request, in *updateCustomKeyStoreIn) (any, error) {
	ui := kms.UpdateCustomKeyStoreInput{ID: in.CustomKeyStoreId, NewName: in.NewCustomKeyStoreName, KeyStorePassword: in.KeyStorePassword,
		CloudHsmClusterID: in.CloudHsmClusterId, XksProxyUriEndpoint: in.XksProxyUriEndpoint, XksProxyUriPath: in.XksProxyUriPath,
		XksProxyConnectivity: in.XksProxyConnectivity, XksProxyVpcEndpointServiceName: in.XksProxyVpcEndpointServiceName,
		XksProxyVpcEndpointServiceOwner: in.XksProxyVpcEndpointServiceOwner}
	if cr := in.XksProxyAuthenticationCredential; cr != nil {
		ui.XksAccessKeyID, ui.XksSecretAccessKey = &cr.AccessKeyId, &cr.RawSecretAccessKey
	}
	return empty{}, a.svc.UpdateCustomKeyStore(ctx, c, ui)
}
