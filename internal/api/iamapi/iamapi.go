// Package iamapi serves the subset of IAM and STS that keyhold's principals
// need, in their own Query protocol, so that `aws iam ...` and
// `aws sts assume-role` work with --endpoint-url. It translates forms to
// identity.Admin calls and results to IAM's XML shapes; it decides nothing.
// It must never return a secret other than the one an operation exists to
// return (CreateAccessKey, AssumeRole, CreateAccount).
package iamapi

import (
	"context"
	"encoding/xml"
	"errors"
	"net/url"
	"strconv"
	"time"

	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/awsquery"
	"github.com/keyhold/keyhold/internal/identity"
	"github.com/keyhold/keyhold/internal/store"
)

// Namespaces of IAM and STS responses.
const (
	IAMNamespace = "https://iam.amazonaws.com/doc/2010-05-08/"
	STSNamespace = "https://sts.amazonaws.com/doc/2011-06-15/"
)

func mapError(err error) *awsquery.Error {
	var e *identity.Error
	if errors.As(err, &e) {
		return &awsquery.Error{Code: e.Code, Status: e.Status, Message: e.Message, Sender: e.Status < 500}
	}
	return nil
}

// API binds IAM and STS to identity.Admin.
type API struct {
	admin *identity.Admin
	// IsSuperAdmin says whether a caller may create accounts (the first
	// account's admin).
	IsSuperAdmin func(c awsjson.Caller) bool
	// Trust decides AssumeRole against a role's trust policy.
	Trust identity.TrustCheck
}

// New returns the IAM and STS operation tables.
func New(admin *identity.Admin, isSuperAdmin func(awsjson.Caller) bool, trust identity.TrustCheck) (iam, sts *awsquery.Service) {
	a := &API{admin: admin, IsSuperAdmin: isSuperAdmin, Trust: trust}
	op := func(svc, name string, h func(context.Context, *awsjson.Call, url.Values) (any, error)) awsquery.Operation {
		return awsquery.Operation{Name: name, Action: svc + ":" + name, Handle: h}
	}
	iam = awsquery.NewService("iam", IAMNamespace, mapError,
		op("iam", "CreateUser", a.createUser),
		op("iam", "GetUser", a.getUser),
		op("iam", "ListUsers", a.listUsers),
		op("iam", "DeleteUser", a.deleteUser),
		op("iam", "CreateRole", a.createRole),
		op("iam", "GetRole", a.getRole),
		op("iam", "ListRoles", a.listRoles),
		op("iam", "DeleteRole", a.deleteRole),
		op("iam", "CreateAccessKey", a.createAccessKey),
		op("iam", "ListAccessKeys", a.listAccessKeys),
		op("iam", "UpdateAccessKey", a.updateAccessKey),
		op("iam", "DeleteAccessKey", a.deleteAccessKey),
		op("iam", "PutUserPolicy", a.putPolicy("user")),
		op("iam", "PutRolePolicy", a.putPolicy("role")),
		op("iam", "GetUserPolicy", a.getPolicy("user")),
		op("iam", "GetRolePolicy", a.getPolicy("role")),
		op("iam", "DeleteUserPolicy", a.deletePolicy("user")),
		op("iam", "DeleteRolePolicy", a.deletePolicy("role")),
		op("iam", "ListUserPolicies", a.listPolicies("user")),
		op("iam", "ListRolePolicies", a.listPolicies("role")),
		op("iam", "TagUser", a.tag("user")),
		op("iam", "TagRole", a.tag("role")),
		op("iam", "UntagUser", a.untag("user")),
		op("iam", "UntagRole", a.untag("role")),
		op("iam", "ListUserTags", a.listTags("user")),
		op("iam", "ListRoleTags", a.listTags("role")),
		op("iam", "CreateAccount", a.createAccount),
	)
	sts = awsquery.NewService("sts", STSNamespace, mapError,
		op("sts", "AssumeRole", a.assumeRole),
		op("sts", "GetCallerIdentity", a.getCallerIdentity),
	)
	return iam, sts
}

func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

func required(form url.Values, name string) (string, error) {
	v := form.Get(name)
	if v == "" {
		return "", &awsquery.Error{Code: "ValidationError", Status: 400, Sender: true,
			Message: "1 validation error detected: Value null at '" + lowerFirst(name) + "' failed to satisfy constraint: Member must not be null"}
	}
	return v, nil
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]+'a'-'A') + s[1:]
}

type user struct {
	Path       string
	UserName   string
	UserId     string
	Arn        string
	CreateDate string
}

func toUser(p store.Principal) user {
	return user{Path: "/", UserName: p.Name, UserId: p.ID, Arn: p.ARN, CreateDate: isoTime(p.Created)}
}

type role struct {
	Path                     string
	RoleName                 string
	RoleId                   string
	Arn                      string
	CreateDate               string
	AssumeRolePolicyDocument string
}

func toRole(p store.Principal) role {
	return role{Path: "/", RoleName: p.Name, RoleId: p.ID, Arn: p.ARN, CreateDate: isoTime(p.Created),
		AssumeRolePolicyDocument: url.QueryEscape(p.TrustPolicy)}
}

func (a *API) createUser(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
	name, err := required(f, "UserName")
	if err != nil {
		return nil, err
	}
	p, err := a.admin.CreateUser(ctx, c.Caller.AccountID, name)
	if err != nil {
		return nil, err
	}
	return struct {
		XMLName xml.Name `xml:"R"`
		User    user
	}{User: toUser(p)}, nil
}

func (a *API) getUser(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
	name := f.Get("UserName")
	var p store.Principal
	var err error
	if name == "" {
		p, err = a.admin.GetPrincipalByARN(ctx, c.Caller.ARN)
	} else {
		p, err = a.admin.GetPrincipal(ctx, c.Caller.AccountID, "user", name)
	}
	if err != nil {
		return nil, err
	}
	return struct {
		XMLName xml.Name `xml:"R"`
		User    user
	}{User: toUser(p)}, nil
}

type members[T any] struct {
	Member []T `xml:"member"`
}

func (a *API) listUsers(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
	ps, err := a.admin.ListPrincipals(ctx, c.Caller.AccountID, "user")
	if err != nil {
		return nil, err
	}
	out := struct {
		XMLName     xml.Name `xml:"R"`
		Users       members[user]
		IsTruncated bool
	}{}
	for _, p := range ps {
		out.Users.Member = append(out.Users.Member, toUser(p))
	}
	return out, nil
}

func (a *API) deleteUser(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
	name, err := required(f, "UserName")
	if err != nil {
		return nil, err
	}
	return nil, a.admin.DeletePrincipal(ctx, c.Caller.AccountID, "user", name)
}

func (a *API) createRole(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
	name, err := required(f, "RoleName")
	if err != nil {
		return nil, err
	}
	doc, err := required(f, "AssumeRolePolicyDocument")
	if err != nil {
		return nil, err
	}
	p, err := a.admin.CreateRole(ctx, c.Caller.AccountID, name, doc)
	if err != nil {
		return nil, err
	}
	return struct {
		XMLName xml.Name `xml:"R"`
		Role    role
	}{Role: toRole(p)}, nil
}

func (a *API) getRole(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
	name, err := required(f, "RoleName")
	if err != nil {
		return nil, err
	}
	p, err := a.admin.GetPrincipal(ctx, c.Caller.AccountID, "role", name)
	if err != nil {
		return nil, err
	}
	return struct {
		XMLName xml.Name `xml:"R"`
		Role    role
	}{Role: toRole(p)}, nil
}

func (a *API) listRoles(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
	ps, err := a.admin.ListPrincipals(ctx, c.Caller.AccountID, "role")
	if err != nil {
		return nil, err
	}
	out := struct {
		XMLName     xml.Name `xml:"R"`
		Roles       members[role]
		IsTruncated bool
	}{}
	for _, p := range ps {
		out.Roles.Member = append(out.Roles.Member, toRole(p))
	}
	return out, nil
}

func (a *API) deleteRole(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
	name, err := required(f, "RoleName")
	if err != nil {
		return nil, err
	}
	return nil, a.admin.DeletePrincipal(ctx, c.Caller.AccountID, "role", name)
}

type accessKey struct {
	UserName        string
	AccessKeyId     string
	Status          string
	SecretAccessKey string `xml:",omitempty"`
	CreateDate      string
}

// userName is the UserName parameter, or the calling user's own name.
func (a *API) userName(ctx context.Context, c *awsjson.Call, f url.Values) (string, error) {
	if n := f.Get("UserName"); n != "" {
		return n, nil
	}
	p, err := a.admin.GetPrincipalByARN(ctx, c.Caller.ARN)
	if err != nil {
		return "", err
	}
	return p.Name, nil
}

func (a *API) createAccessKey(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
	name, err := a.userName(ctx, c, f)
	if err != nil {
		return nil, err
	}
	cr, info, err := a.admin.CreateAccessKey(ctx, c.Caller.AccountID, name)
	if err != nil {
		return nil, err
	}
	return struct {
		XMLName   xml.Name `xml:"R"`
		AccessKey accessKey
	}{AccessKey: accessKey{UserName: name, AccessKeyId: cr.AccessKeyID, Status: info.Status, SecretAccessKey: cr.SecretAccessKey, CreateDate: isoTime(info.Created)}}, nil
}

func (a *API) listAccessKeys(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
	name, err := a.userName(ctx, c, f)
	if err != nil {
		return nil, err
	}
	ks, err := a.admin.ListAccessKeys(ctx, c.Caller.AccountID, name)
	if err != nil {
		return nil, err
	}
	out := struct {
		XMLName           xml.Name `xml:"R"`
		AccessKeyMetadata members[accessKey]
		IsTruncated       bool
	}{}
	for _, k := range ks {
		out.AccessKeyMetadata.Member = append(out.AccessKeyMetadata.Member, accessKey{UserName: k.UserName, AccessKeyId: k.ID, Status: k.Status, CreateDate: isoTime(k.Created)})
	}
	return out, nil
}

func (a *API) updateAccessKey(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
	name, err := a.userName(ctx, c, f)
	if err != nil {
		return nil, err
	}
	id, err := required(f, "AccessKeyId")
	if err != nil {
		return nil, err
	}
	return nil, a.admin.UpdateAccessKey(ctx, c.Caller.AccountID, name, id, f.Get("Status"))
}

func (a *API) deleteAccessKey(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
	name, err := a.userName(ctx, c, f)
	if err != nil {
		return nil, err
	}
	id, err := required(f, "AccessKeyId")
	if err != nil {
		return nil, err
	}
	return nil, a.admin.DeleteAccessKey(ctx, c.Caller.AccountID, name, id)
}

func principalParam(typ string) string {
	if typ == "user" {
		return "UserName"
	}
	return "RoleName"
}

func (a *API) putPolicy(typ string) func(context.Context, *awsjson.Call, url.Values) (any, error) {
	return func(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
		name, err := required(f, principalParam(typ))
		if err != nil {
			return nil, err
		}
		pn, err := required(f, "PolicyName")
		if err != nil {
			return nil, err
		}
		doc, err := required(f, "PolicyDocument")
		if err != nil {
			return nil, err
		}
		return nil, a.admin.PutPolicy(ctx, c.Caller.AccountID, typ, name, pn, doc)
	}
}

func (a *API) getPolicy(typ string) func(context.Context, *awsjson.Call, url.Values) (any, error) {
	return func(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
		name, err := required(f, principalParam(typ))
		if err != nil {
			return nil, err
		}
		pn, err := required(f, "PolicyName")
		if err != nil {
			return nil, err
		}
		doc, err := a.admin.GetPolicy(ctx, c.Caller.AccountID, typ, name, pn)
		if err != nil {
			return nil, err
		}
		if typ == "user" {
			return struct {
				XMLName        xml.Name `xml:"R"`
				UserName       string
				PolicyName     string
				PolicyDocument string
			}{UserName: name, PolicyName: pn, PolicyDocument: url.QueryEscape(doc)}, nil
		}
		return struct {
			XMLName        xml.Name `xml:"R"`
			RoleName       string
			PolicyName     string
			PolicyDocument string
		}{RoleName: name, PolicyName: pn, PolicyDocument: url.QueryEscape(doc)}, nil
	}
}

func (a *API) deletePolicy(typ string) func(context.Context, *awsjson.Call, url.Values) (any, error) {
	return func(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
		name, err := required(f, principalParam(typ))
		if err != nil {
			return nil, err
		}
		pn, err := required(f, "PolicyName")
		if err != nil {
			return nil, err
		}
		return nil, a.admin.DeletePolicy(ctx, c.Caller.AccountID, typ, name, pn)
	}
}

func (a *API) listPolicies(typ string) func(context.Context, *awsjson.Call, url.Values) (any, error) {
	return func(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
		name, err := required(f, principalParam(typ))
		if err != nil {
			return nil, err
		}
		ns, err := a.admin.ListPolicies(ctx, c.Caller.AccountID, typ, name)
		if err != nil {
			return nil, err
		}
		return struct {
			XMLName     xml.Name `xml:"R"`
			PolicyNames members[string]
			IsTruncated bool
		}{PolicyNames: members[string]{Member: ns}}, nil
	}
}

// createAccount is a keyhold extension (IAM has no such action): the first
// account's admin creates another account with its own admin user.
func (a *API) createAccount(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
	if a.IsSuperAdmin == nil || !a.IsSuperAdmin(c.Caller) {
		return nil, &awsquery.Error{Code: "AccessDenied", Status: 403, Sender: true,
			Message: "User: " + c.Caller.ARN + " is not authorized to perform: iam:CreateAccount (only the first account's keyhold-admin may create accounts)"}
	}
	acct, cr, err := a.admin.CreateAccount(ctx)
	if err != nil {
		return nil, err
	}
	return struct {
		XMLName   xml.Name `xml:"R"`
		AccountId string
		AccessKey accessKey
	}{AccountId: acct, AccessKey: accessKey{UserName: identity.AdminUserName, AccessKeyId: cr.AccessKeyID, Status: "Active", SecretAccessKey: cr.SecretAccessKey, CreateDate: isoTime(time.Now())}}, nil
}

func (a *API) assumeRole(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
	arn, err := required(f, "RoleArn")
	if err != nil {
		return nil, err
	}
	sn, err := required(f, "RoleSessionName")
	if err != nil {
		return nil, err
	}
	var dur time.Duration
	if d := f.Get("DurationSeconds"); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil {
			return nil, &awsquery.Error{Code: "ValidationError", Status: 400, Sender: true, Message: "DurationSeconds must be a number of seconds."}
		}
		dur = time.Duration(n) * time.Second
	}
	caller := c.Caller
	sc, err := a.admin.AssumeRole(ctx, caller, arn, sn, dur, a.Trust)
	if err != nil {
		return nil, err
	}
	return struct {
		XMLName     xml.Name `xml:"R"`
		Credentials struct {
			AccessKeyId     string
			SecretAccessKey string
			SessionToken    string
			Expiration      string
		}
		AssumedRoleUser struct {
			AssumedRoleId string
			Arn           string
		}
	}{Credentials: struct {
		AccessKeyId     string
		SecretAccessKey string
		SessionToken    string
		Expiration      string
	}{sc.AccessKeyID, sc.SecretAccessKey, sc.SessionToken, isoTime(sc.Expiration)},
		AssumedRoleUser: struct {
			AssumedRoleId string
			Arn           string
		}{sc.AssumedID, sc.AssumedARN}}, nil
}

func (a *API) getCallerIdentity(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
	return struct {
		XMLName xml.Name `xml:"R"`
		UserId  string
		Account string
		Arn     string
	}{UserId: c.Caller.UserID, Account: c.Caller.AccountID, Arn: c.Caller.ARN}, nil
}

// formList reads a Query-protocol list: Name.member.1, Name.member.2, ...
func formList(f url.Values, name string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := f[name+".member."+strconv.Itoa(i)]
		if !ok || len(v) == 0 {
			return out
		}
		out = append(out, v[0])
	}
}

func (a *API) tag(typ string) func(context.Context, *awsjson.Call, url.Values) (any, error) {
	return func(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
		name, err := required(f, principalParam(typ))
		if err != nil {
			return nil, err
		}
		var tags []store.Tag
		for i := 1; ; i++ {
			k, ok := f["Tags.member."+strconv.Itoa(i)+".Key"]
			if !ok || len(k) == 0 {
				break
			}
			tags = append(tags, store.Tag{Key: k[0], Value: f.Get("Tags.member." + strconv.Itoa(i) + ".Value")})
		}
		if len(tags) == 0 {
			return nil, &awsquery.Error{Code: "ValidationError", Status: 400, Sender: true, Message: "Tags is required."}
		}
		return nil, a.admin.TagPrincipal(ctx, c.Caller.AccountID, typ, name, tags)
	}
}

func (a *API) untag(typ string) func(context.Context, *awsjson.Call, url.Values) (any, error) {
	return func(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
		name, err := required(f, principalParam(typ))
		if err != nil {
			return nil, err
		}
		return nil, a.admin.UntagPrincipal(ctx, c.Caller.AccountID, typ, name, formList(f, "TagKeys"))
	}
}

type iamTag struct {
	Key   string
	Value string
}

func (a *API) listTags(typ string) func(context.Context, *awsjson.Call, url.Values) (any, error) {
	return func(ctx context.Context, c *awsjson.Call, f url.Values) (any, error) {
		name, err := required(f, principalParam(typ))
		if err != nil {
			return nil, err
		}
		p, err := a.admin.GetPrincipal(ctx, c.Caller.AccountID, typ, name)
		if err != nil {
			return nil, err
		}
		out := struct {
			XMLName     xml.Name `xml:"R"`
			Tags        members[iamTag]
			IsTruncated bool
		}{}
		for _, t := range p.Tags {
			out.Tags.Member = append(out.Tags.Member, iamTag{Key: t.Key, Value: t.Value})
		}
		return out, nil
	}
}
