package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/keyhold/keyhold/internal/awsjson"
)

// The Create key wizard, in the steps AWS's console has: configure key
// (type, usage, advanced options: key material origin and the custom key
// store), labels (alias, description, tags), key administrators, key usage
// permissions (key users, other AWS accounts), review (the generated key
// policy, editable). Every step posts the whole form: the fields of the
// other steps travel as hidden inputs, so it works without script.

type wizard struct {
	Step        int
	KeyType     string // SYMMETRIC, ASYMMETRIC, HMAC
	KeyUsage    string
	KeySpec     string
	Origin      string // AWS_KMS, EXTERNAL, AWS_CLOUDHSM, EXTERNAL_KEY_STORE
	StoreID     string
	XksKeyID    string
	Alias       string
	Description string
	TagKeys     []string
	TagValues   []string
	Admins      string
	AllowDelete bool
	Users       string
	Accounts    string
	Policy      string
	// Filled by the handler for the page.
	Stores   []eligibleStore
	Account  string
	Caller   string
	Steps    []string
	TagRows  []int
	KeySpecs map[string][]string
}

type eligibleStore struct {
	storeEntry
	Eligible bool
	Reason   string
	Cluster  string // "cluster-x: 2 active HSMs in us-east-1a, us-east-1b"
}

var wizardSteps = []string{"Configure key", "Add labels", "Define key administrative permissions", "Define key usage permissions", "Review"}

var keySpecsByType = map[string][]string{
	"SYMMETRIC":  {"SYMMETRIC_DEFAULT"},
	"ASYMMETRIC": {"RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", "ECC_SECG_P256K1", "ML_DSA_44", "ML_DSA_65", "ML_DSA_87", "SM2"},
	"HMAC":       {"HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512"},
}

func readWizard(r *http.Request) *wizard {
	f := r.PostForm
	wz := &wizard{KeyType: f.Get("key_type"), KeyUsage: f.Get("key_usage"), KeySpec: f.Get("key_spec"), Origin: f.Get("origin"),
		StoreID: f.Get("store"), XksKeyID: strings.TrimSpace(f.Get("xks_key_id")), Alias: strings.TrimSpace(f.Get("alias")),
		Description: f.Get("description"), Admins: f.Get("admins"), AllowDelete: f.Get("allow_delete") == "on",
		Users: f.Get("users"), Accounts: f.Get("accounts"), Policy: f.Get("policy")}
	keys, vals := f["tag_key"], f["tag_value"]
	for i, k := range keys {
		v := ""
		if i < len(vals) {
			v = vals[i]
		}
		if strings.TrimSpace(k) == "" && v == "" {
			continue
		}
		wz.TagKeys = append(wz.TagKeys, k)
		wz.TagValues = append(wz.TagValues, v)
	}
	if r.Method == http.MethodGet {
		wz.AllowDelete = true
	}
	if wz.KeyType == "" {
		wz.KeyType = "SYMMETRIC"
	}
	if wz.Origin == "" {
		wz.Origin = "AWS_KMS"
	}
	if wz.KeyUsage == "" {
		wz.KeyUsage = "ENCRYPT_DECRYPT"
	}
	if wz.KeySpec == "" || !has(keySpecsByType[wz.KeyType], wz.KeySpec) {
		wz.KeySpec = keySpecsByType[wz.KeyType][0]
	}
	return wz
}

func has(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func fieldErr(msg string) *awsjson.Error {
	return &awsjson.Error{Type: "ValidationException", Status: 400, Message: msg}
}

func (h *Handler) createKeyPage(w http.ResponseWriter, r *http.Request, s *session) {
	wz := readWizard(r)
	wz.Step = 1
	var ae *awsjson.Error
	if r.Method == http.MethodPost {
		from := atoiDefault(r.PostFormValue("step"), 1)
		to := r.PostFormValue("go")
		switch {
		case to == "finish":
			if h.finishKey(w, r, s, wz) {
				return
			}
			wz.Step = 5
			ae = s.takeError(h)
		default:
			next := atoiDefault(to, from)
			if next > from {
				// Validate the steps being left.
				if ae = wz.check(from); ae != nil {
					next = from
				}
			}
			if next < 1 {
				next = 1
			}
			if next > 5 {
				next = 5
			}
			if next == 5 && from < 5 {
				wz.Policy = wz.defaultPolicy(s.caller.AccountID)
			}
			wz.Step = next
		}
	}
	if wz.Step == 1 {
		wz.Stores = h.eligibleStores(r, s)
	}
	wz.Account, wz.Caller = s.caller.AccountID, s.caller.ARN
	wz.Steps = wizardSteps
	wz.KeySpecs = keySpecsByType
	wz.TagRows = make([]int, len(wz.TagKeys)+2)
	h.render(w, r, s, "createkey", "Create key", "keys", wz, ae)
}

func atoiDefault(s string, d int) int {
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil {
		return d
	}
	return n
}

// takeError returns and clears a pending error of the session.
func (s *session) takeError(h *Handler) *awsjson.Error {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := s.flashErr
	s.flashErr = nil
	return e
}

var accountRe = regexp.MustCompile(`^[0-9]{12}$`)

// check validates what the console itself decides before the API sees the
// request: the choices only the console offers.
func (wz *wizard) check(step int) *awsjson.Error {
	if step >= 1 {
		switch wz.Origin {
		case "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE":
			if wz.StoreID == "" {
				return fieldErr("Choose a custom key store for the key material.")
			}
			if wz.Origin == "EXTERNAL_KEY_STORE" && wz.XksKeyID == "" {
				return fieldErr("Enter the external key ID: the ID of the key in the external key manager.")
			}
			if wz.KeyType != "SYMMETRIC" {
				return fieldErr("Keys in a custom key store are symmetric encryption keys.")
			}
		}
	}
	if step >= 4 {
		for _, a := range lines(wz.Accounts) {
			if !accountRe.MatchString(a) {
				return fieldErr(fmt.Sprintf("%q is not an AWS account ID (12 digits).", a))
			}
		}
	}
	return nil
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' }) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// defaultPolicy is the key policy AWS's console generates from the
// wizard's permissions.
func (wz *wizard) defaultPolicy(account string) string {
	type stmt struct {
		Sid       string
		Effect    string
		Principal map[string]any
		Action    any
		Resource  string
		Condition map[string]any `json:",omitempty"`
	}
	one := func(list []string) any {
		if len(list) == 1 {
			return list[0]
		}
		return list
	}
	st := []stmt{{Sid: "Enable IAM User Permissions", Effect: "Allow",
		Principal: map[string]any{"AWS": "arn:aws:iam::" + account + ":root"}, Action: "kms:*", Resource: "*"}}
	if admins := lines(wz.Admins); len(admins) > 0 {
		actions := []string{"kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
			"kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource"}
		if wz.AllowDelete {
			actions = append(actions, "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion")
		}
		if wz.KeySpec == "SYMMETRIC_DEFAULT" && wz.Origin == "AWS_KMS" {
			actions = append(actions, "kms:RotateKeyOnDemand")
		}
		st = append(st, stmt{Sid: "Allow access for Key Administrators", Effect: "Allow",
			Principal: map[string]any{"AWS": one(admins)}, Action: actions, Resource: "*"})
	}
	var users []string
	users = append(users, lines(wz.Users)...)
	for _, a := range lines(wz.Accounts) {
		users = append(users, "arn:aws:iam::"+a+":root")
	}
	if len(users) > 0 {
		var use []string
		switch {
		case wz.KeyType == "HMAC":
			use = []string{"kms:GenerateMac", "kms:VerifyMac", "kms:DescribeKey"}
		case wz.KeyUsage == "SIGN_VERIFY":
			use = []string{"kms:DescribeKey", "kms:GetPublicKey", "kms:Sign", "kms:Verify"}
		case wz.KeyUsage == "KEY_AGREEMENT":
			use = []string{"kms:DescribeKey", "kms:GetPublicKey", "kms:DeriveSharedSecret"}
		case wz.KeyType == "ASYMMETRIC":
			use = []string{"kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:DescribeKey", "kms:GetPublicKey"}
		default:
			use = []string{"kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"}
		}
		st = append(st, stmt{Sid: "Allow use of the key", Effect: "Allow", Principal: map[string]any{"AWS": one(users)}, Action: use, Resource: "*"})
		if wz.KeyType == "SYMMETRIC" {
			st = append(st, stmt{Sid: "Allow attachment of persistent resources", Effect: "Allow", Principal: map[string]any{"AWS": one(users)},
				Action: []string{"kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"}, Resource: "*",
				Condition: map[string]any{"Bool": map[string]any{"kms:GrantIsForAWSResource": "true"}}})
		}
	}
	b, _ := json.MarshalIndent(map[string]any{"Version": "2012-10-17", "Id": "key-consolepolicy-3", "Statement": st}, "", "    ")
	return string(b)
}

// finishKey creates the key (and its alias); it reports whether it
// answered (a redirect to the new key's page).
func (h *Handler) finishKey(w http.ResponseWriter, r *http.Request, s *session, wz *wizard) bool {
	if ae := wz.check(5); ae != nil {
		s.setError(h, ae)
		return false
	}
	in := map[string]any{"KeyUsage": wz.KeyUsage, "KeySpec": wz.KeySpec, "Origin": wz.Origin, "Policy": wz.Policy}
	if wz.Description != "" {
		in["Description"] = wz.Description
	}
	if wz.Origin == "AWS_CLOUDHSM" || wz.Origin == "EXTERNAL_KEY_STORE" {
		in["CustomKeyStoreId"] = wz.StoreID
	}
	if wz.Origin == "EXTERNAL_KEY_STORE" {
		in["XksKeyId"] = wz.XksKeyID
	}
	if len(wz.TagKeys) > 0 {
		tags := make([]tag, len(wz.TagKeys))
		for i := range wz.TagKeys {
			tags[i] = tag{TagKey: wz.TagKeys[i], TagValue: wz.TagValues[i]}
		}
		in["Tags"] = tags
	}
	var out struct{ KeyMetadata keyMetadata }
	if ae := h.call(r, s, kmsAPI, "CreateKey", in, &out); ae != nil {
		s.setError(h, ae)
		return false
	}
	target := "/console/keys/" + url.PathEscape(out.KeyMetadata.KeyId)
	if wz.Alias != "" {
		if ae := h.call(r, s, kmsAPI, "CreateAlias", map[string]any{"AliasName": aliasName(wz.Alias), "TargetKeyId": out.KeyMetadata.KeyId}, nil); ae != nil {
			h.redirect(w, r, s, target, "The key was created, but not its alias.", ae)
			return true
		}
	}
	h.redirect(w, r, s, target, "Success: your key "+out.KeyMetadata.KeyId+" was created.", nil)
	return true
}

func (s *session) setError(h *Handler, ae *awsjson.Error) {
	h.mu.Lock()
	s.flashErr = ae
	h.mu.Unlock()
}

// eligibleStores lists the custom key stores a key can be created in, and
// why the others cannot: the store must be CONNECTED, and a CloudHSM key
// store's cluster must have active HSMs in two Availability Zones.
func (h *Handler) eligibleStores(r *http.Request, s *session) []eligibleStore {
	stores, ae := h.allStores(r, s)
	if ae != nil {
		return nil
	}
	out := make([]eligibleStore, 0, len(stores))
	for _, st := range stores {
		e := eligibleStore{storeEntry: st, Eligible: true}
		if st.ConnectionState != "CONNECTED" {
			e.Eligible, e.Reason = false, "Not eligible: the key store is "+st.ConnectionState+"; only a CONNECTED key store can hold new keys."
		}
		if st.CustomKeyStoreType != "EXTERNAL_KEY_STORE" && st.CloudHsmClusterId != "" {
			c, ae := h.describeCluster(r, s, st.CloudHsmClusterId)
			switch {
			case ae != nil:
				e.Cluster = st.CloudHsmClusterId + ": " + ae.Type
			default:
				zones := c.activeZones()
				e.Cluster = fmt.Sprintf("%s: %d active HSM(s) in %s", c.ClusterId, c.activeHSMs(), strings.Join(zones, ", "))
				if e.Eligible && len(zones) < 2 {
					e.Eligible, e.Reason = false, "Not eligible: its cluster needs at least two active HSMs in different Availability Zones."
				}
			}
		}
		out = append(out, e)
	}
	return out
}

// allStores pages through DescribeCustomKeyStores.
func (h *Handler) allStores(r *http.Request, s *session) ([]storeEntry, *awsjson.Error) {
	var all []storeEntry
	in := map[string]any{"Limit": 1000}
	for {
		var out struct {
			CustomKeyStores []storeEntry
			NextMarker      string
			Truncated       bool
		}
		if ae := h.call(r, s, kmsAPI, "DescribeCustomKeyStores", in, &out); ae != nil {
			return nil, ae
		}
		all = append(all, out.CustomKeyStores...)
		if !out.Truncated || out.NextMarker == "" {
			return all, nil
		}
		in["Marker"] = out.NextMarker
	}
}
