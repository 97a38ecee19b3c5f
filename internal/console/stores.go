package console

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/keyhold/keyhold/internal/awsjson"
)

type storesPageData struct {
	Tab    string // "cloudhsm" or "xks"
	Stores []storeEntry
	autoRefresh
}

func storeTab(t string) string {
	if t == "xks" {
		return "xks"
	}
	return "cloudhsm"
}

func (h *Handler) storesPage(w http.ResponseWriter, r *http.Request, s *session) {
	d := storesPageData{Tab: storeTab(r.URL.Query().Get("type"))}
	stores, ae := h.allStores(r, s)
	for _, st := range stores {
		if (st.CustomKeyStoreType == "EXTERNAL_KEY_STORE") != (d.Tab == "xks") {
			continue
		}
		d.Stores = append(d.Stores, st)
		if st.ConnectionState == "CONNECTING" || st.ConnectionState == "DISCONNECTING" {
			d.busy = true
		}
	}
	sort.SliceStable(d.Stores, func(i, j int) bool { return d.Stores[i].CreationDate < d.Stores[j].CreationDate })
	title := "AWS CloudHSM key stores"
	if d.Tab == "xks" {
		title = "External key stores"
	}
	h.render(w, r, s, "stores", title, "stores", d, ae)
}

type storePageData struct {
	Store storeEntry
	Keys  int
}

func (d storePageData) refresh() int {
	if d.Store.ConnectionState == "CONNECTING" || d.Store.ConnectionState == "DISCONNECTING" {
		return 3
	}
	return 0
}

func (h *Handler) storePage(w http.ResponseWriter, r *http.Request, s *session) {
	var out struct{ CustomKeyStores []storeEntry }
	ae := h.call(r, s, kmsAPI, "DescribeCustomKeyStores", map[string]any{"CustomKeyStoreId": r.PathValue("id")}, &out)
	if ae != nil || len(out.CustomKeyStores) != 1 {
		h.render(w, r, s, "store", "Custom key store", "stores", nil, ae)
		return
	}
	d := storePageData{Store: out.CustomKeyStores[0]}
	h.render(w, r, s, "store", d.Store.CustomKeyStoreName, "stores", d, nil)
}

// storeForm is the Create custom key store form (both types) and the Edit
// form.
type storeForm struct {
	Type         string // AWS_CLOUDHSM or EXTERNAL_KEY_STORE
	Name         string
	ClusterID    string
	TrustAnchor  string
	Connectivity string
	Endpoint     string
	Path         string
	VpceService  string
	VpceOwner    string
	AccessKeyID  string
	Clusters     []clusterInfo
	Loaded       string // the proxy configuration file's name, once read
}

// proxyConfigFile is the XKS proxy configuration file the AWS console
// accepts (and `keyhold xks-proxy init` prints).
type proxyConfigFile struct {
	XksProxyUriEndpoint              string
	XksProxyUriPath                  string
	XksProxyConnectivity             string
	XksProxyVpcEndpointServiceName   string
	XksProxyVpcEndpointServiceOwner  string
	XksProxyAuthenticationCredential struct {
		AccessKeyId        string
		RawSecretAccessKey string
	}
}

func (h *Handler) createStorePage(w http.ResponseWriter, r *http.Request, s *session) {
	f := storeForm{Type: "AWS_CLOUDHSM", Connectivity: "PUBLIC_ENDPOINT"}
	if storeTab(r.FormValue("type")) == "xks" {
		f.Type = "EXTERNAL_KEY_STORE"
	}
	var ae *awsjson.Error
	if r.Method == http.MethodPost {
		fv := r.PostFormValue
		f.Name, f.ClusterID, f.TrustAnchor = strings.TrimSpace(fv("name")), fv("cluster"), fv("trust_anchor")
		f.Connectivity, f.Endpoint, f.Path = fv("connectivity"), strings.TrimSpace(fv("endpoint")), strings.TrimSpace(fv("path"))
		f.VpceService, f.VpceOwner, f.AccessKeyID = strings.TrimSpace(fv("vpce_service")), strings.TrimSpace(fv("vpce_owner")), strings.TrimSpace(fv("access_key_id"))
		secret := fv("secret")
		if b, ok := upload(r, "trust_anchor_file"); ok {
			f.TrustAnchor = string(b)
		}
		if b, ok := upload(r, "proxy_config"); ok {
			var pc proxyConfigFile
			if err := json.Unmarshal(b, &pc); err != nil {
				ae = fieldErr("The proxy configuration file is not valid JSON: " + err.Error())
			} else {
				_, hdr, _ := r.FormFile("proxy_config")
				f.Loaded = hdr.Filename
				f.Endpoint, f.Path = pc.XksProxyUriEndpoint, pc.XksProxyUriPath
				if pc.XksProxyConnectivity != "" {
					f.Connectivity = pc.XksProxyConnectivity
				}
				f.VpceService, f.VpceOwner = pc.XksProxyVpcEndpointServiceName, pc.XksProxyVpcEndpointServiceOwner
				f.AccessKeyID, secret = pc.XksProxyAuthenticationCredential.AccessKeyId, pc.XksProxyAuthenticationCredential.RawSecretAccessKey
			}
		}
		if ae == nil && fv("action") == "create" {
			in := map[string]any{"CustomKeyStoreName": f.Name, "CustomKeyStoreType": f.Type}
			if f.Type == "AWS_CLOUDHSM" {
				in["CloudHsmClusterId"], in["TrustAnchorCertificate"], in["KeyStorePassword"] = f.ClusterID, f.TrustAnchor, fv("password")
			} else {
				in["XksProxyConnectivity"], in["XksProxyUriEndpoint"], in["XksProxyUriPath"] = f.Connectivity, f.Endpoint, f.Path
				if f.Connectivity == "VPC_ENDPOINT_SERVICE" {
					in["XksProxyVpcEndpointServiceName"] = f.VpceService
					if f.VpceOwner != "" {
						in["XksProxyVpcEndpointServiceOwner"] = f.VpceOwner
					}
				}
				in["XksProxyAuthenticationCredential"] = map[string]string{"AccessKeyId": f.AccessKeyID, "RawSecretAccessKey": secret}
			}
			dropEmpty(in)
			var out struct{ CustomKeyStoreId string }
			if ae = h.call(r, s, kmsAPI, "CreateCustomKeyStore", in, &out); ae == nil {
				h.redirect(w, r, s, "/console/keystores/"+url.PathEscape(out.CustomKeyStoreId),
					"Success: the custom key store "+f.Name+" ("+out.CustomKeyStoreId+") was created. Connect it to use it.", nil)
				return
			}
		}
		if ae == nil && f.Loaded != "" && secret != "" {
			// The secret is never written back into a page: the form keeps
			// the file for Create.
			f.Loaded += " (credential read; choose the file again if you change it)"
		}
	}
	if f.Type == "AWS_CLOUDHSM" {
		var cae *awsjson.Error
		if f.Clusters, cae = h.clusters(r, s); ae == nil {
			ae = cae
		}
		// The menu offers only clusters no key store of the account uses
		// (CreateCustomKeyStore refuses the others).
		if stores, sae := h.allStores(r, s); sae == nil {
			used := map[string]string{}
			for _, st := range stores {
				if st.CloudHsmClusterId != "" {
					used[st.CloudHsmClusterId] = st.CustomKeyStoreName
				}
			}
			for i := range f.Clusters {
				f.Clusters[i].UsedBy = used[f.Clusters[i].ClusterId]
			}
		}
	}
	title := "Create an AWS CloudHSM key store"
	if f.Type == "EXTERNAL_KEY_STORE" {
		title = "Create an external key store"
	}
	h.render(w, r, s, "createstore", title, "stores", f, ae)
}

// dropEmpty removes empty strings, so that the API sees absent members
// (and says they are required) rather than empty ones.
func dropEmpty(m map[string]any) {
	for k, v := range m {
		if s, ok := v.(string); ok && s == "" {
			delete(m, k)
		}
	}
}

// upload reads an uploaded file of the form (at most 64 KiB).
func upload(r *http.Request, field string) ([]byte, bool) {
	f, hdr, err := r.FormFile(field)
	if err != nil || hdr.Size == 0 {
		return nil, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	return b, err == nil && len(b) > 0
}

func (h *Handler) storeAction(w http.ResponseWriter, r *http.Request, s *session) {
	h.runAction(w, r, s, "/console/keystores/", storeActions)
}

var storeActions = map[string]action{
	"connect": func(h *Handler, _ http.ResponseWriter, r *http.Request, s *session, id string) outcome {
		return apiCall(h.call(r, s, kmsAPI, "ConnectCustomKeyStore", map[string]any{"CustomKeyStoreId": id}, nil),
			"Connecting the key store. This page refreshes until the connection completes.")
	},
	"disconnect": func(h *Handler, _ http.ResponseWriter, r *http.Request, s *session, id string) outcome {
		return apiCall(h.call(r, s, kmsAPI, "DisconnectCustomKeyStore", map[string]any{"CustomKeyStoreId": id}, nil), "The key store is disconnected.")
	},
	"delete": func(h *Handler, _ http.ResponseWriter, r *http.Request, s *session, id string) outcome {
		if !confirmed(r) {
			return outcome{ae: fieldErr(`Type "delete" to confirm that you want to delete this custom key store.`)}
		}
		o := apiCall(h.call(r, s, kmsAPI, "DeleteCustomKeyStore", map[string]any{"CustomKeyStoreId": id}, nil), "The custom key store was deleted.")
		o.to = "/console/keystores?type=" + r.PostFormValue("tab")
		return o
	},
	"update": func(h *Handler, _ http.ResponseWriter, r *http.Request, s *session, id string) outcome {
		in := map[string]any{"CustomKeyStoreId": id}
		fv := r.PostFormValue
		set := func(member, field string) {
			if v := strings.TrimSpace(fv(field)); v != "" {
				in[member] = v
			}
		}
		set("NewCustomKeyStoreName", "name")
		set("CloudHsmClusterId", "cluster")
		if p := fv("password"); p != "" {
			in["KeyStorePassword"] = p
		}
		set("XksProxyConnectivity", "connectivity")
		set("XksProxyUriEndpoint", "endpoint")
		set("XksProxyUriPath", "path")
		set("XksProxyVpcEndpointServiceName", "vpce_service")
		if ak, sk := strings.TrimSpace(fv("access_key_id")), fv("secret"); ak != "" || sk != "" {
			in["XksProxyAuthenticationCredential"] = map[string]string{"AccessKeyId": ak, "RawSecretAccessKey": sk}
		}
		return apiCall(h.call(r, s, kmsAPI, "UpdateCustomKeyStore", in, nil), "The key store settings are saved.")
	},
}
