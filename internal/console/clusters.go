package console

import (
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/keyhold/keyhold/internal/awsjson"
)

// clusterInfo is the part of DescribeClusters' Cluster the console shows.
type clusterInfo struct {
	ClusterId       string
	State           string
	StateMessage    string
	HsmType         string
	CreateTimestamp float64
	SourceBackupId  string
	VpcId           string
	SubnetMapping   map[string]string // AZ -> subnet
	Hsms            []struct {
		HsmId            string
		AvailabilityZone string
		State            string
		EniIp            string
		SubnetId         string
	}
	Certificates *struct {
		ClusterCsr         string
		ClusterCertificate string
	}
	// UsedBy names the account's key store on this cluster (console only).
	UsedBy string `json:"-"`
}

func (c clusterInfo) activeHSMs() int {
	n := 0
	for _, h := range c.Hsms {
		if h.State == "ACTIVE" {
			n++
		}
	}
	return n
}

// activeZones are the distinct Availability Zones of the active HSMs.
func (c clusterInfo) activeZones() []string {
	seen := map[string]bool{}
	var out []string
	for _, h := range c.Hsms {
		if h.State == "ACTIVE" && !seen[h.AvailabilityZone] {
			seen[h.AvailabilityZone] = true
			out = append(out, h.AvailabilityZone)
		}
	}
	sort.Strings(out)
	return out
}

// HSMsByZone is "us-east-1a: 1, us-east-1b: 1".
func (c clusterInfo) HSMsByZone() string {
	n := map[string]int{}
	for _, h := range c.Hsms {
		n[h.AvailabilityZone]++
	}
	var zs []string
	for z := range n {
		zs = append(zs, z)
	}
	sort.Strings(zs)
	parts := make([]string, len(zs))
	for i, z := range zs {
		parts[i] = z + ": " + strconv.Itoa(n[z])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Zones are the cluster's Availability Zones, sorted.
func (c clusterInfo) Zones() []string {
	var zs []string
	for z := range c.SubnetMapping {
		zs = append(zs, z)
	}
	sort.Strings(zs)
	return zs
}

func (h *Handler) clusters(r *http.Request, s *session) ([]clusterInfo, *awsjson.Error) {
	var all []clusterInfo
	in := map[string]any{"MaxResults": 25}
	for {
		var out struct {
			Clusters  []clusterInfo
			NextToken string
		}
		if ae := h.call(r, s, hsmAPI, "DescribeClusters", in, &out); ae != nil {
			return nil, ae
		}
		all = append(all, out.Clusters...)
		if out.NextToken == "" {
			break
		}
		in["NextToken"] = out.NextToken
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].CreateTimestamp < all[j].CreateTimestamp })
	return all, nil
}

func (h *Handler) describeCluster(r *http.Request, s *session, id string) (clusterInfo, *awsjson.Error) {
	var out struct{ Clusters []clusterInfo }
	if ae := h.call(r, s, hsmAPI, "DescribeClusters", map[string]any{"Filters": map[string][]string{"clusterIds": {id}}}, &out); ae != nil {
		return clusterInfo{}, ae
	}
	if len(out.Clusters) != 1 {
		return clusterInfo{}, &awsjson.Error{Type: "CloudHsmResourceNotFoundException", Status: 400, Message: "The cluster " + id + " was not found."}
	}
	return out.Clusters[0], nil
}

type clustersPageData struct {
	Clusters []clusterInfo
	Subnets  []Subnet
	autoRefresh
}

func busyCluster(c clusterInfo) bool {
	switch c.State {
	case "CREATE_IN_PROGRESS", "INITIALIZE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS":
		return true
	}
	for _, h := range c.Hsms {
		if h.State == "CREATE_IN_PROGRESS" || h.State == "DELETE_IN_PROGRESS" {
			return true
		}
	}
	return c.State == "UNINITIALIZED" && (c.Certificates == nil || c.Certificates.ClusterCsr == "")
}

func (h *Handler) clustersPage(w http.ResponseWriter, r *http.Request, s *session) {
	cs, ae := h.clusters(r, s)
	d := clustersPageData{Clusters: cs, Subnets: h.cfg.Subnets}
	for _, c := range cs {
		d.busy = d.busy || busyCluster(c)
	}
	h.render(w, r, s, "clusters", "AWS CloudHSM clusters", "clusters", d, ae)
}

func (h *Handler) createCluster(w http.ResponseWriter, r *http.Request, s *session) {
	in := map[string]any{"HsmType": r.PostFormValue("hsm_type"), "SubnetIds": r.PostForm["subnet"]}
	if b := strings.TrimSpace(r.PostFormValue("source_backup")); b != "" {
		in["SourceBackupId"] = b
	}
	var out struct{ Cluster clusterInfo }
	if ae := h.call(r, s, hsmAPI, "CreateCluster", in, &out); ae != nil {
		h.redirect(w, r, s, "/console/clusters", "", ae)
		return
	}
	h.redirect(w, r, s, "/console/clusters/"+url.PathEscape(out.Cluster.ClusterId), "Success: cluster "+out.Cluster.ClusterId+" is being created.", nil)
}

type clusterPageData struct {
	Cluster clusterInfo
	Backups []struct {
		BackupId        string
		BackupState     string
		CreateTimestamp float64
	}
}

func (d clusterPageData) refresh() int {
	if busyCluster(d.Cluster) {
		return 2
	}
	return 0
}

func (h *Handler) clusterPage(w http.ResponseWriter, r *http.Request, s *session) {
	c, ae := h.describeCluster(r, s, r.PathValue("id"))
	if ae != nil {
		h.render(w, r, s, "cluster", "Cluster", "clusters", nil, ae)
		return
	}
	d := clusterPageData{Cluster: c}
	var bo struct {
		Backups []struct {
			BackupId        string
			BackupState     string
			CreateTimestamp float64
		}
	}
	if h.call(r, s, hsmAPI, "DescribeBackups", map[string]any{"Filters": map[string][]string{"clusterIds": {c.ClusterId}}}, &bo) == nil {
		d.Backups = bo.Backups
	}
	h.render(w, r, s, "cluster", c.ClusterId, "clusters", d, nil)
}

// clusterCSR downloads the cluster's CSR (ClusterCsr.csr, as AWS names it).
func (h *Handler) clusterCSR(w http.ResponseWriter, r *http.Request, s *session) {
	c, ae := h.describeCluster(r, s, r.PathValue("id"))
	if ae != nil || c.Certificates == nil || c.Certificates.ClusterCsr == "" {
		http.Error(w, "The cluster has no certificate signing request.", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/pkcs10")
	w.Header().Set("Content-Disposition", `attachment; filename="`+c.ClusterId+`_ClusterCsr.csr"`)
	w.Write([]byte(c.Certificates.ClusterCsr))
}

func (h *Handler) clusterAction(w http.ResponseWriter, r *http.Request, s *session) {
	h.runAction(w, r, s, "/console/clusters/", clusterActions)
}

var clusterActions = map[string]action{
	"add-hsm": func(h *Handler, _ http.ResponseWriter, r *http.Request, s *session, id string) outcome {
		return apiCall(h.call(r, s, hsmAPI, "CreateHsm", map[string]any{"ClusterId": id, "AvailabilityZone": r.PostFormValue("az")}, nil), "An HSM is being created.")
	},
	"delete-hsm": func(h *Handler, _ http.ResponseWriter, r *http.Request, s *session, id string) outcome {
		return apiCall(h.call(r, s, hsmAPI, "DeleteHsm", map[string]any{"ClusterId": id, "HsmId": r.PostFormValue("hsm")}, nil), "The HSM is being deleted.")
	},
	"initialize": func(h *Handler, _ http.ResponseWriter, r *http.Request, s *session, id string) outcome {
		cert, _ := upload(r, "signed_cert")
		anchor, _ := upload(r, "trust_anchor")
		return apiCall(h.call(r, s, hsmAPI, "InitializeCluster", map[string]any{"ClusterId": id, "SignedCert": string(cert), "TrustAnchor": string(anchor)}, nil),
			"The cluster is being initialized.")
	},
	"delete": func(h *Handler, _ http.ResponseWriter, r *http.Request, s *session, id string) outcome {
		if !confirmed(r) {
			return outcome{ae: fieldErr(`Type "delete" to confirm that you want to delete this cluster.`)}
		}
		o := apiCall(h.call(r, s, hsmAPI, "DeleteCluster", map[string]any{"ClusterId": id}, nil), "The cluster is being deleted.")
		o.to = "/console/clusters"
		return o
	},
}
