package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/keyhold/keyhold/internal/awsjson"
)

// keyMetadata is the part of DescribeKey's KeyMetadata the console shows.
type keyMetadata struct {
	KeyId                       string
	Arn                         string
	AWSAccountId                string
	Description                 string
	KeyState                    string
	KeyUsage                    string
	KeySpec                     string
	KeyManager                  string
	Origin                      string
	CustomKeyStoreId            string
	CloudHsmClusterId           string
	CreationDate                float64
	DeletionDate                float64
	PendingDeletionWindowInDays int
	EncryptionAlgorithms        []string
	SigningAlgorithms           []string
	MacAlgorithms               []string
	KeyAgreementAlgorithms      []string
	MultiRegion                 bool
	XksKeyConfiguration         *struct{ Id string }
}

type aliasEntry struct {
	AliasName   string
	AliasArn    string
	TargetKeyId string
}

type tag struct {
	TagKey   string
	TagValue string
}

// keyRow is one row of the keys table.
type keyRow struct {
	keyMetadata
	Aliases []string
}

// Optional columns of the keys table (the column chooser).
var keyColumns = []struct{ ID, Label string }{
	{"origin", "Origin"},
	{"store", "Custom key store ID"},
	{"storetype", "Custom key store type"},
	{"description", "Description"},
	{"created", "Creation date"},
}

type keysPageData struct {
	Rows       []keyRow
	Columns    []string // chosen optional columns
	AllColumns []struct{ ID, Label string }
	Sort, Dir  string
	Filter     string
	Limit      int
	Limits     []int
	NextURL    string
	PrevURL    string
	SortURL    map[string]string
	Total      int
}

var pageSizes = []int{10, 25, 50, 100}

// keysPage lists the account's customer managed keys, a ListKeys page at a
// time; sorting and the filter apply to the page shown (as the AWS console
// sorts what it has loaded).
func (h *Handler) keysPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > 100 {
		limit = 25
	}
	d := keysPageData{Columns: q["col"], AllColumns: keyColumns, Sort: q.Get("sort"), Dir: q.Get("dir"),
		Filter: strings.TrimSpace(q.Get("filter")), Limit: limit, Limits: pageSizes, SortURL: map[string]string{}}
	in := map[string]any{"Limit": limit}
	if m := q.Get("marker"); m != "" {
		in["Marker"] = m
	}
	var list struct {
		Keys       []struct{ KeyId, KeyArn string }
		NextMarker string
		Truncated  bool
	}
	if ae := h.call(r, s, kmsAPI, "ListKeys", in, &list); ae != nil {
		h.render(w, r, s, "keys", "Customer managed keys", "keys", d, ae)
		return
	}
	for _, k := range list.Keys {
		var dk struct{ KeyMetadata keyMetadata }
		if ae := h.call(r, s, kmsAPI, "DescribeKey", map[string]any{"KeyId": k.KeyId}, &dk); ae != nil {
			// A key this principal may list but not describe still shows.
			d.Rows = append(d.Rows, keyRow{keyMetadata: keyMetadata{KeyId: k.KeyId, Arn: k.KeyArn, KeyState: "-", KeyManager: "CUSTOMER"}})
			continue
		}
		if dk.KeyMetadata.KeyManager != "CUSTOMER" {
			continue
		}
		row := keyRow{keyMetadata: dk.KeyMetadata}
		var al struct{ Aliases []aliasEntry }
		if h.call(r, s, kmsAPI, "ListAliases", map[string]any{"KeyId": k.KeyId}, &al) == nil {
			for _, a := range al.Aliases {
				row.Aliases = append(row.Aliases, strings.TrimPrefix(a.AliasName, "alias/"))
			}
		}
		if d.Filter != "" && !rowMatches(row, d.Filter) {
			continue
		}
		d.Rows = append(d.Rows, row)
	}
	sortRows(d.Rows, d.Sort, d.Dir == "desc")
	d.Total = len(d.Rows)
	base := url.Values{}
	for _, c := range d.Columns {
		base.Add("col", c)
	}
	base.Set("limit", strconv.Itoa(limit))
	if d.Filter != "" {
		base.Set("filter", d.Filter)
	}
	cur := q.Get("marker")
	back := q["back"]
	if list.Truncated {
		v := cloneValues(base)
		v.Set("marker", list.NextMarker)
		for _, b := range append(back, cur) {
			v.Add("back", b)
		}
		d.NextURL = "/console/keys?" + v.Encode()
	}
	if cur != "" {
		v := cloneValues(base)
		if n := len(back); n > 0 {
			if back[n-1] != "" {
				v.Set("marker", back[n-1])
			}
			for _, b := range back[:n-1] {
				v.Add("back", b)
			}
		}
		d.PrevURL = "/console/keys?" + v.Encode()
	}
	for _, col := range []string{"alias", "id", "state", "spec", "usage", "origin", "store", "description", "created"} {
		v := cloneValues(base)
		if cur != "" {
			v.Set("marker", cur)
			for _, b := range back {
				v.Add("back", b)
			}
		}
		v.Set("sort", col)
		if d.Sort == col && d.Dir != "desc" {
			v.Set("dir", "desc")
		}
		d.SortURL[col] = "/console/keys?" + v.Encode()
	}
	h.render(w, r, s, "keys", "Customer managed keys", "keys", d, nil)
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func rowMatches(r keyRow, f string) bool {
	f = strings.ToLower(f)
	fields := append([]string{r.KeyId, r.Description, r.KeyState, r.KeySpec, r.Origin, r.CustomKeyStoreId}, r.Aliases...)
	for _, x := range fields {
		if strings.Contains(strings.ToLower(x), f) {
			return true
		}
	}
	return false
}

func sortRows(rows []keyRow, col string, desc bool) {
	key := func(r keyRow) string {
		switch col {
		case "alias":
			return strings.Join(r.Aliases, ",")
		case "state":
			return r.KeyState
		case "spec":
			return r.KeySpec
		case "usage":
			return r.KeyUsage
		case "origin":
			return r.Origin
		case "store":
			return r.CustomKeyStoreId
		case "description":
			return r.Description
		case "created":
			return strconv.FormatFloat(r.CreationDate, 'f', 3, 64)
		case "id":
			return r.KeyId
		}
		return ""
	}
	if col == "" {
		return
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if desc {
			return key(rows[i]) > key(rows[j])
		}
		return key(rows[i]) < key(rows[j])
	})
}

// storeEntry is DescribeCustomKeyStores' entry.
type storeEntry struct {
	CustomKeyStoreId       string
	CustomKeyStoreName     string
	CustomKeyStoreType     string
	CloudHsmClusterId      string
	TrustAnchorCertificate string
	ConnectionState        string
	ConnectionErrorCode    string
	CreationDate           float64
	XksProxyConfiguration  *struct {
		Connectivity            string
		AccessKeyId             string
		UriEndpoint             string
		UriPath                 string
		VpcEndpointServiceName  string
		VpcEndpointServiceOwner string
	}
}

type keyPageData struct {
	Key      keyMetadata
	Aliases  []aliasEntry
	Tags     []tag
	Policy   string
	Store    *storeEntry
	Rotation *struct {
		KeyRotationEnabled   bool
		RotationPeriodInDays int
	}
	RotationErr *awsjson.Error
}

func (h *Handler) loadKey(r *http.Request, s *session, id string) (keyPageData, *awsjson.Error) {
	var d keyPageData
	var dk struct{ KeyMetadata keyMetadata }
	if ae := h.call(r, s, kmsAPI, "DescribeKey", map[string]any{"KeyId": id}, &dk); ae != nil {
		return d, ae
	}
	d.Key = dk.KeyMetadata
	var al struct{ Aliases []aliasEntry }
	if ae := h.call(r, s, kmsAPI, "ListAliases", map[string]any{"KeyId": d.Key.KeyId}, &al); ae == nil {
		d.Aliases = al.Aliases
	}
	var tg struct{ Tags []tag }
	if ae := h.call(r, s, kmsAPI, "ListResourceTags", map[string]any{"KeyId": d.Key.KeyId}, &tg); ae == nil {
		d.Tags = tg.Tags
	}
	var pol struct{ Policy string }
	if ae := h.call(r, s, kmsAPI, "GetKeyPolicy", map[string]any{"KeyId": d.Key.KeyId, "PolicyName": "default"}, &pol); ae == nil {
		d.Policy = prettyJSON(pol.Policy)
	}
	if d.Key.CustomKeyStoreId != "" {
		var ds struct{ CustomKeyStores []storeEntry }
		if ae := h.call(r, s, kmsAPI, "DescribeCustomKeyStores", map[string]any{"CustomKeyStoreId": d.Key.CustomKeyStoreId}, &ds); ae == nil && len(ds.CustomKeyStores) == 1 {
			d.Store = &ds.CustomKeyStores[0]
		}
	}
	if d.Key.KeySpec == "SYMMETRIC_DEFAULT" && d.Key.Origin == "AWS_KMS" {
		var rot struct {
			KeyRotationEnabled   bool
			RotationPeriodInDays int
		}
		if ae := h.call(r, s, kmsAPI, "GetKeyRotationStatus", map[string]any{"KeyId": d.Key.KeyId}, &rot); ae == nil {
			d.Rotation = &rot
		} else {
			d.RotationErr = ae
		}
	}
	return d, nil
}

func prettyJSON(s string) string {
	var v any
	if json.Unmarshal([]byte(s), &v) != nil {
		return s
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return s
	}
	return string(b)
}

func (h *Handler) keyPage(w http.ResponseWriter, r *http.Request, s *session) {
	d, ae := h.loadKey(r, s, r.PathValue("id"))
	if ae != nil {
		h.render(w, r, s, "key", "Key", "keys", nil, ae)
		return
	}
	h.render(w, r, s, "key", "Key "+d.Key.KeyId, "keys", d, nil)
}

// keyAction runs one of the key detail page's forms.
func (h *Handler) keyAction(w http.ResponseWriter, r *http.Request, s *session) {
	h.runAction(w, r, s, "/console/keys/", keyActions)
}

// kmsKeyAction is an action that is one KMS call on the key: in names it
// as KeyId, with what the form adds.
func kmsKeyAction(op, msg string, form func(r *http.Request, in map[string]any)) action {
	return func(h *Handler, _ http.ResponseWriter, r *http.Request, s *session, id string) outcome {
		in := map[string]any{"KeyId": id}
		if form != nil {
			form(r, in)
		}
		return apiCall(h.call(r, s, kmsAPI, op, in, nil), msg)
	}
}

var keyActions = map[string]action{
	"enable":  kmsKeyAction("EnableKey", "The key is enabled.", nil),
	"disable": kmsKeyAction("DisableKey", "The key is disabled.", nil),
	"schedule-deletion": func(h *Handler, _ http.ResponseWriter, r *http.Request, s *session, id string) outcome {
		days, err := strconv.Atoi(r.PostFormValue("days"))
		if err != nil {
			days = 30
		}
		if !confirmed(r) {
			return outcome{ae: fieldErr(`Type "delete" to confirm that you want to schedule the deletion of this key.`)}
		}
		return apiCall(h.call(r, s, kmsAPI, "ScheduleKeyDeletion", map[string]any{"KeyId": id, "PendingWindowInDays": days}, nil), "The key's deletion is scheduled.")
	},
	"cancel-deletion": kmsKeyAction("CancelKeyDeletion", "The key's deletion is canceled; the key is disabled.", nil),
	"description": kmsKeyAction("UpdateKeyDescription", "The description is saved.", func(r *http.Request, in map[string]any) {
		in["Description"] = r.PostFormValue("description")
	}),
	"policy": func(h *Handler, w http.ResponseWriter, r *http.Request, s *session, id string) outcome {
		doc := r.PostFormValue("policy")
		ae := h.call(r, s, kmsAPI, "PutKeyPolicy", map[string]any{"KeyId": id, "PolicyName": "default", "Policy": doc}, nil)
		if ae == nil {
			return outcome{msg: "The key policy is saved."}
		}
		// The error is shown in place, over the text as it was typed.
		d, lae := h.loadKey(r, s, id)
		if lae != nil {
			return outcome{ae: ae}
		}
		d.Policy = doc
		w.WriteHeader(ae.Status)
		h.render(w, r, s, "key", "Key "+d.Key.KeyId, "keys", d, ae)
		return outcome{answered: true}
	},
	"tag": kmsKeyAction("TagResource", "The tag is saved.", func(r *http.Request, in map[string]any) {
		in["Tags"] = []tag{{TagKey: r.PostFormValue("tag_key"), TagValue: r.PostFormValue("tag_value")}}
	}),
	"untag": kmsKeyAction("UntagResource", "The tag is removed.", func(r *http.Request, in map[string]any) {
		in["TagKeys"] = []string{r.PostFormValue("tag_key")}
	}),
	"alias": func(h *Handler, _ http.ResponseWriter, r *http.Request, s *session, id string) outcome {
		return apiCall(h.call(r, s, kmsAPI, "CreateAlias", map[string]any{"TargetKeyId": id, "AliasName": aliasName(r.PostFormValue("alias"))}, nil), "The alias is created.")
	},
	"delete-alias": func(h *Handler, _ http.ResponseWriter, r *http.Request, s *session, _ string) outcome {
		return apiCall(h.call(r, s, kmsAPI, "DeleteAlias", map[string]any{"AliasName": r.PostFormValue("alias")}, nil), "The alias is deleted.")
	},
	"enable-rotation": kmsKeyAction("EnableKeyRotation", "Automatic key rotation is enabled.", func(r *http.Request, in map[string]any) {
		if p, err := strconv.Atoi(r.PostFormValue("period")); err == nil {
			in["RotationPeriodInDays"] = p
		}
	}),
	"disable-rotation": kmsKeyAction("DisableKeyRotation", "Automatic key rotation is disabled.", nil),
}

func aliasName(a string) string {
	a = strings.TrimSpace(a)
	if a != "" && !strings.HasPrefix(a, "alias/") {
		a = "alias/" + a
	}
	return a
}
