package console

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/server"
)

// fakeAPI knows one access key and records every invocation.
type fakeAPI struct {
	mu    sync.Mutex
	calls []server.Invocation
}

func (f *fakeAPI) SignIn(ctx context.Context, ak, sk, tok string) (awsjson.Caller, *awsjson.Error) {
	if ak != "AKIDCONSOLE" {
		return awsjson.Caller{}, &awsjson.Error{Type: "UnrecognizedClientException", Status: 400, Message: "The security token included in the request is invalid."}
	}
	if sk != "secret" {
		return awsjson.Caller{}, &awsjson.Error{Type: "InvalidSignatureException", Status: 400, Message: "The request signature we calculated does not match the signature you provided."}
	}
	return awsjson.Caller{AccountID: "111122223333", ARN: "arn:aws:iam::111122223333:user/alice", AccessKeyID: ak}, nil
}

func (f *fakeAPI) Invoke(ctx context.Context, in server.Invocation) server.InvokeResult {
	f.mu.Lock()
	f.calls = append(f.calls, in)
	f.mu.Unlock()
	switch in.Operation {
	case "ListKeys":
		return server.InvokeResult{Body: []byte(`{"Keys":[{"KeyId":"k1","KeyArn":"arn:aws:kms:us-east-1:111122223333:key/k1"}],"Truncated":false}`)}
	case "DescribeKey":
		return server.InvokeResult{Body: []byte(`{"KeyMetadata":{"KeyId":"k1","Arn":"arn:aws:kms:us-east-1:111122223333:key/k1","KeyState":"Enabled","KeyManager":"CUSTOMER","KeySpec":"SYMMETRIC_DEFAULT","KeyUsage":"ENCRYPT_DECRYPT","Origin":"AWS_CLOUDHSM","CustomKeyStoreId":"cks-1234567890abcdef0","CloudHsmClusterId":"cluster-234567abcdef"}}`)}
	case "DisableKey":
		return server.InvokeResult{Err: &awsjson.Error{Type: "AccessDeniedException", Status: 400, Message: "User: arn:aws:iam::111122223333:user/alice is not authorized to perform: kms:DisableKey"}}
	}
	return server.InvokeResult{Body: []byte(`{}`)}
}

func (f *fakeAPI) ops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		out = append(out, c.Operation)
	}
	return out
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newTestConsole(t *testing.T) (*httptest.Server, *fakeAPI, *clock, *http.Client) {
	t.Helper()
	api := &fakeAPI{}
	clk := &clock{t: time.Now()}
	c, err := New(Config{API: api, Region: "us-east-1", Now: clk.now, IdleTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Mount(c, http.NotFoundHandler()))
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	cl := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return srv, api, clk, cl
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func get(t *testing.T, cl *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := cl.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func post(t *testing.T, cl *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := cl.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func signIn(t *testing.T, srv *httptest.Server, cl *http.Client, secret string) (*http.Response, string) {
	t.Helper()
	_, page := get(t, cl, srv.URL+"/console/signin")
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the sign-in page has no CSRF token")
	}
	return post(t, cl, srv.URL+"/console/signin", url.Values{"csrf": {m[1]}, "access_key_id": {"AKIDCONSOLE"}, "secret_access_key": {secret}})
}

func TestSessionAndHeaders(t *testing.T) {
	srv, api, clk, cl := newTestConsole(t)
	resp, _ := get(t, cl, srv.URL+"/")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/console/" {
		t.Fatalf("GET / = %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = get(t, cl, srv.URL+"/console/keys")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "/console/signin") {
		t.Fatalf("anonymous keys page = %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("CSP %q", csp)
	}

	// Sign-in without the form's token is refused.
	resp, _ = post(t, cl, srv.URL+"/console/signin", url.Values{"access_key_id": {"AKIDCONSOLE"}, "secret_access_key": {"secret"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-in without CSRF token = %d", resp.StatusCode)
	}
	resp, body := signIn(t, srv, cl, "wrong")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "InvalidSignatureException") {
		t.Fatalf("wrong secret = %d", resp.StatusCode)
	}
	resp, _ = signIn(t, srv, cl, "secret")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in = %d", resp.StatusCode)
	}
	var sc string
	for _, c := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(c, cookieName+"=") {
			sc = c
		}
	}
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/console/"} {
		if !strings.Contains(sc, want) {
			t.Fatalf("session cookie %q lacks %s", sc, want)
		}
	}
	if strings.Contains(sc, "Secure") {
		t.Fatalf("session cookie over plain HTTP is Secure: %q", sc)
	}
	resp, page := get(t, cl, srv.URL+"/console/keys?col=store")
	if resp.StatusCode != 200 || !strings.Contains(page, "cks-1234567890abcdef0") || !strings.Contains(page, "Custom key store ID") {
		t.Fatalf("keys page = %d:\n%s", resp.StatusCode, page)
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, " onclick=") || strings.Contains(page, "secret") {
		t.Fatal("a page carries inline script or the secret")
	}
	for _, c := range api.calls {
		if c.UserAgent != UserAgent || c.AccessKeyID != "AKIDCONSOLE" {
			t.Fatalf("invocation %+v", c)
		}
	}

	// A state-changing post needs the session's CSRF token.
	resp, _ = post(t, cl, srv.URL+"/console/keys/k1/disable", url.Values{"csrf": {"forged"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("post with a forged CSRF token = %d", resp.StatusCode)
	}
	if strings.Contains(strings.Join(api.ops(), ","), "DisableKey") {
		t.Fatal("a forged post reached the API")
	}
	tok := csrfRe.FindStringSubmatch(page)[1]
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/console/keys/k1/disable", strings.NewReader(url.Values{"csrf": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin post = %d", resp.StatusCode)
	}
	resp, _ = post(t, cl, srv.URL+"/console/keys/k1/disable", url.Values{"csrf": {tok}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("disable = %d", resp.StatusCode)
	}
	_, page = get(t, cl, srv.URL+"/console/keys/k1")
	if !strings.Contains(page, "AccessDeniedException") || !strings.Contains(page, "cluster-234567abcdef") {
		t.Fatalf("key page after a denied disable:\n%s", page)
	}

	// Idle timeout.
	clk.add(2 * time.Minute)
	resp, _ = get(t, cl, srv.URL+"/console/keys")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("an idle session still works: %d", resp.StatusCode)
	}

	// Sign-out ends the session for good.
	signIn(t, srv, cl, "secret")
	_, page = get(t, cl, srv.URL+"/console/keys")
	tok = csrfRe.FindStringSubmatch(page)[1]
	u, _ := url.Parse(srv.URL + "/console/")
	old := cl.Jar.Cookies(u)
	post(t, cl, srv.URL+"/console/signout", url.Values{"csrf": {tok}})
	jar, _ := cookiejar.New(nil)
	jar.SetCookies(u, old)
	replay := &http.Client{Jar: jar, CheckRedirect: cl.CheckRedirect}
	resp, _ = get(t, replay, srv.URL+"/console/keys")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("the signed-out session cookie still works: %d", resp.StatusCode)
	}
}

func TestDefaultPolicy(t *testing.T) {
	wz := &wizard{KeyType: "SYMMETRIC", KeySpec: "SYMMETRIC_DEFAULT", KeyUsage: "ENCRYPT_DECRYPT", Origin: "AWS_CLOUDHSM",
		Admins: "arn:aws:iam::111122223333:user/admin", AllowDelete: false, Users: "arn:aws:iam::111122223333:role/app", Accounts: "444455556666"}
	var doc struct {
		Statement []struct {
			Sid       string
			Principal struct{ AWS any }
			Action    any
		}
	}
	if err := json.Unmarshal([]byte(wz.defaultPolicy("111122223333")), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Statement) != 4 {
		t.Fatalf("%d statements", len(doc.Statement))
	}
	admin, _ := json.Marshal(doc.Statement[1].Action)
	if strings.Contains(string(admin), "ScheduleKeyDeletion") || strings.Contains(string(admin), "RotateKeyOnDemand") {
		t.Fatalf("admin actions without deletion, for a CloudHSM key: %s", admin)
	}
	users, _ := json.Marshal(doc.Statement[2].Principal.AWS)
	if !strings.Contains(string(users), "arn:aws:iam::444455556666:root") || !strings.Contains(string(users), "role/app") {
		t.Fatalf("key users: %s", users)
	}
}
