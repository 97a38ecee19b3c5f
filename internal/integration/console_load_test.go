package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// TestConsoleKeysPageLoad prints how long the console's keys page takes
// with 100 keys and then with 10,000 keys in the account (the median of 20
// loads of the first page, 25 and 100 keys per page, and of a page deep in
// the list). It measures; it asserts nothing about speed. It creates 10,000
// keys, so it runs only with KEYHOLD_CONSOLE_LOAD=1:
//
//	KEYHOLD_CONSOLE_LOAD=1 go test -run TestConsoleKeysPageLoad -v ./internal/integration/
func TestConsoleKeysPageLoad(t *testing.T) {
	if os.Getenv("KEYHOLD_CONSOLE_LOAD") != "1" {
		t.Skip("set KEYHOLD_CONSOLE_LOAD=1 to time the console's keys page with 10,000 keys")
	}
	e := start(t)
	cl := consoleSession(t, e)
	measure := func(keys int) {
		for _, q := range []string{"limit=25", "limit=100"} {
			d, n := timePage(t, cl, e.Endpoint+"/console/keys?"+q)
			fmt.Printf("console keys page, %d keys in the account, %s: median %v over 20 loads (%d bytes)\n", keys, q, d, n)
		}
	}
	createKeys(t, e, 100)
	measure(100)
	createKeys(t, e, 9900)
	measure(10000)
	// A page deep in the list: follow "Next page" 50 times with 100 keys
	// a page, then time that page.
	next := e.Endpoint + "/console/keys?limit=100"
	re := regexp.MustCompile(`href="(/console/keys\?[^"]*)" rel="next"`)
	for i := 0; i < 50; i++ {
		_, body := fetch(t, cl, next)
		m := re.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("page %d has no next page", i+1)
		}
		next = e.Endpoint + htmlUnescape(m[1])
	}
	d, n := timePage(t, cl, next)
	fmt.Printf("console keys page, 10000 keys in the account, page 51 at 100 keys a page: median %v over 20 loads (%d bytes)\n", d, n)
}

func htmlUnescape(s string) string {
	return regexp.MustCompile(`&amp;`).ReplaceAllString(s, "&")
}

func createKeys(t *testing.T, e *env, n int) {
	t.Helper()
	var wg sync.WaitGroup
	work := make(chan int)
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				if _, err := e.KMS.CreateKey(context.Background(), &kms.CreateKeyInput{Description: aws.String("console load")}); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// consoleSession signs in to the console with the admin's access key.
func consoleSession(t *testing.T, e *env) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	cl := &http.Client{Jar: jar}
	_, page := fetch(t, cl, e.Endpoint+"/console/signin")
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no sign-in form")
	}
	resp, err := cl.PostForm(e.Endpoint+"/console/signin", url.Values{"csrf": {m[1]}, "access_key_id": {e.AccessKey}, "secret_access_key": {e.Secret}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/console/keys" {
		t.Fatalf("sign-in ended at %s", resp.Request.URL)
	}
	return cl
}

func fetch(t *testing.T, cl *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := cl.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	return resp.StatusCode, string(b)
}

func timePage(t *testing.T, cl *http.Client, u string) (time.Duration, int) {
	t.Helper()
	var ds []time.Duration
	var n int
	for i := 0; i < 20; i++ {
		t0 := time.Now()
		_, body := fetch(t, cl, u)
		ds = append(ds, time.Since(t0))
		n = len(body)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2].Round(100 * time.Microsecond), n
}

// TestConsoleOverHTTP runs console actions against a real keyhold without a
// browser (so it runs where chromium is not installed): the wizard's Finish
// creates the key with the reviewed policy and alias through the API's
// pipeline, and the API sees the console's user agent in the audit trail.
func TestConsoleOverHTTP(t *testing.T) {
	dir := t.TempDir()
	e := startWith(t, dir, nil)
	cl := consoleSession(t, e)
	_, page := fetch(t, cl, e.Endpoint+"/console/keys/create")
	tok := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)[1]
	policy := `{"Version":"2012-10-17","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + e.Account + `:root"},"Action":"kms:*","Resource":"*"},{"Sid":"reviewed","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + e.Account + `:root"},"Action":"kms:Encrypt","Resource":"*"}]}`
	form := url.Values{"csrf": {tok}, "step": {"5"}, "go": {"finish"}, "key_type": {"SYMMETRIC"}, "key_usage": {"ENCRYPT_DECRYPT"},
		"key_spec": {"SYMMETRIC_DEFAULT"}, "origin": {"AWS_KMS"}, "alias": {"console-http"}, "description": {"from the console"},
		"tag_key": {"team"}, "tag_value": {"kms"}, "policy": {policy}}
	resp, err := cl.PostForm(e.Endpoint+"/console/keys/create", form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Request.URL.Path == "/console/keys/create" {
		t.Fatalf("Finish stayed on the wizard:\n%s", body)
	}
	ctx := context.Background()
	dk, err := e.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/console-http")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(dk.KeyMetadata.Description) != "from the console" {
		t.Fatalf("description %q", aws.ToString(dk.KeyMetadata.Description))
	}
	pol, err := e.KMS.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: dk.KeyMetadata.KeyId, PolicyName: aws.String("default")})
	if err != nil || !regexp.MustCompile(`"Sid":\s*"reviewed"`).MatchString(aws.ToString(pol.Policy)) {
		t.Fatalf("the key's policy is not the reviewed one: %v %s", err, aws.ToString(pol.Policy))
	}
	// A malformed policy comes back as the API's own error, in place.
	form.Set("policy", "{not json")
	form.Set("alias", "console-http-2")
	resp, err = cl.PostForm(e.Endpoint+"/console/keys/create", form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`MalformedPolicyDocumentException`).Match(body) {
		t.Fatalf("a malformed policy does not show MalformedPolicyDocumentException:\n%.2000s", body)
	}
	b, err := os.ReadFile(dir + "/audit/cloudtrail.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`"eventName":"CreateKey"[^\n]*"userAgent":"keyhold-console/1.0"|"userAgent":"keyhold-console/1.0"[^\n]*"eventName":"CreateKey"`).Match(b) {
		t.Fatal("no CreateKey event with the console's user agent in the audit trail")
	}
}
