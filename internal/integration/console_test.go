package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/chromedp/chromedp"

	"github.com/keyhold/keyhold/internal/cli"
	"github.com/keyhold/keyhold/internal/console"
	"github.com/keyhold/keyhold/internal/hsm"
	"github.com/keyhold/keyhold/internal/xks/proxy"
)

// chromiumPath is Debian's chromium package's browser.
const chromiumPath = "/usr/bin/chromium"

// browser drives one headless Chromium for a whole test.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	shot string // screenshot directory
}

// newBrowser launches headless Chromium with a fresh profile, or skips.
func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	path := chromiumPath
	if _, err := os.Stat(path); err != nil {
		if p, err := exec.LookPath("chromium"); err == nil {
			path = p
		} else {
			t.Skip("chromium not installed (apt-get install chromium to run the console's browser tests); skipping")
		}
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 860),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	dir := os.Getenv("KEYHOLD_TEST_OUTPUT")
	if dir == "" {
		dir = filepath.Join("..", "..", "test-output")
	}
	dir = filepath.Join(dir, "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, ctx: ctx, base: base, shot: dir}
}

// stuckAction bounds one browser action (a click and the page it leads
// to): a page the server answers does not take minutes, however busy the
// machine, so an action that does is stuck, and the test fails with a
// screenshot instead of waiting for the binary's deadline. Waits for the
// server's own work (HSMs, connections) use waitText, which has no bound
// of its own.
const stuckAction = 2 * time.Minute

// actionContext is b.ctx bounded for one action.
func (b *browser) actionContext() (context.Context, context.CancelFunc) {
	d := waitDeadline(b.t)
	if s := time.Now().Add(stuckAction); s.Before(d) {
		d = s
	}
	return context.WithDeadline(b.ctx, d)
}

// run runs actions, failing the test (with a screenshot) on error.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := b.actionContext()
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.screenshot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("%s: %v; %s", what, err, b.pageState())
	}
}

// submit runs actions that end in a form submission and waits until the
// browser shows the page the server answered with. What the submission did
// is then read from the page's lasting state, not from its flash message:
// pages refresh themselves while a store connects or a cluster works, and
// on a busy machine the message can be gone before anyone looks.
func (b *browser) submit(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	// Mark this page, and cancel its pending self-refresh (console.js
	// reloads with a timer) so that the only way to a new page is the
	// submission.
	get(b, what+" (mark the page)", chromedp.Evaluate[bool](
		`(function () { var t = setTimeout(function () {}, 0); while (t > 0) { clearTimeout(t--); } window.keyholdTestOld = true; return true; })()`))
	b.run(what, actions...)
	ctx, cancel := b.actionContext()
	defer cancel()
	for {
		// Evaluate fails while the next page loads: not there yet.
		if replaced, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.keyholdTestOld !== true`)); err == nil && replaced {
			return
		}
		if ctx.Err() != nil {
			b.screenshot("failed-" + strings.ReplaceAll(what, " ", "-"))
			b.t.Fatalf("%s: the page did not change; %s", what, b.pageState())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// get runs one action that returns a value.
func get[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := b.actionContext()
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

func (b *browser) open(path string) {
	b.t.Helper()
	b.run("open "+path, chromedp.Navigate(b.base+path), chromedp.WaitReady(chromedp.CSS("body")))
}

// text reads an element's text ("" when it is not on the page).
func (b *browser) text(sel string) string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSS(sel), chromedp.AtLeast(0)))
	if err != nil || len(nodes) == 0 {
		return ""
	}
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(s)
}

// waitText waits until sel's text contains want, reloading path between
// looks when path is not "" (pages that refresh themselves need none).
func (b *browser) waitText(path, sel, want string) string {
	b.t.Helper()
	deadline := waitDeadline(b.t)
	for {
		got := b.text(sel)
		if strings.Contains(got, want) {
			return got
		}
		if time.Now().After(deadline) {
			b.screenshot("timeout")
			b.t.Fatalf("waiting for %q in %s: have %q", want, sel, got)
		}
		time.Sleep(300 * time.Millisecond)
		if path != "" {
			b.open(path)
		}
	}
}

func (b *browser) screenshot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	os.WriteFile(filepath.Join(b.shot, name+".png"), buf, 0o644)
}

// pageState says where the browser is and what the page reads, for a
// failure message (it never fails the test itself).
func (b *browser) pageState() string {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	return fmt.Sprintf("the page at %s reads: %.2000s", loc, b.text("body"))
}

func (b *browser) location() string {
	return get(b, "location", chromedp.Location())
}

// TestConsoleSeedProcedures walks the seeds' console procedures in a real
// browser against a real keyhold with SoftHSM2 clusters and a real XKS
// proxy: cluster -> CloudHSM key store -> connect -> key through the
// wizard -> keys page -> key detail -> disconnect; the external key store
// from an uploaded proxy configuration file; a denial; sign-out. One
// browser and one server serve every step.
func TestConsoleSeedProcedures(t *testing.T) {
	t.Parallel()
	if onPostgres {
		t.Skip("the console's browser test runs once, on SQLite")
	}
	needSoftHSM(t)
	if _, err := os.Stat(chromiumPath); err != nil {
		if _, err := exec.LookPath("chromium"); err != nil {
			t.Skip("chromium not installed (apt-get install chromium to run the console's browser tests); skipping")
		}
	}
	// The XKS proxy over its own SoftHSM2 token, in this process.
	useInProcessSoftHSM(t)
	proxyDir := t.TempDir()
	res, err := proxy.Init(proxy.InitOptions{Dir: proxyDir, Addr: "127.0.0.1:0", Prefix: "/console"})
	if err != nil {
		t.Fatal(err)
	}
	pcfg, err := proxy.LoadConfig(res.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	psrv, err := proxy.New(pcfg, proxy.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	pln, err := psrv.Listen()
	if err != nil {
		psrv.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pln.Shutdown(context.Background())
		psrv.Close()
	})
	h := startCloudHSM(t, func(c *cli.ServeConfig) { c.XKSCAFile = res.CAFile })
	b := newBrowser(t, h.Endpoint)
	files := t.TempDir()
	ctx := context.Background()

	signIn := func(ak, sk string) {
		t.Helper()
		b.open("/console/keys")
		if u := b.location(); !strings.Contains(u, "/console/signin") {
			t.Fatalf("an anonymous visit to /console/keys lands on %s, want the sign-in page", u)
		}
		b.run("sign in", chromedp.SendKeys(chromedp.CSS("#access_key_id"), ak), chromedp.SendKeys(chromedp.CSS("#secret_access_key"), sk),
			chromedp.Click(chromedp.CSS("#signin")), chromedp.WaitVisible(chromedp.CSS("#caller")))
	}

	t.Run("sign in", func(t *testing.T) {
		b.t = t
		b.open("/")
		b.run("wrong secret", chromedp.SendKeys(chromedp.CSS("#access_key_id"), h.AccessKey),
			chromedp.SendKeys(chromedp.CSS("#secret_access_key"), "not-the-secret"), chromedp.Click(chromedp.CSS("#signin")),
			chromedp.WaitVisible(chromedp.CSS("#error")))
		if got := b.text("#error"); !strings.Contains(got, "InvalidSignatureException") {
			t.Fatalf("a wrong secret shows %q", got)
		}
		b.screenshot("01-signin")
		signIn(h.AccessKey, h.Secret)
		if got := b.text("#caller"); !strings.HasSuffix(got, ":user/keyhold-admin") {
			t.Fatalf("signed in as %q", got)
		}
	})

	var clusterID string
	t.Run("cluster: create, two HSMs, initialize, activate", func(t *testing.T) {
		b.t = t
		b.open("/console/clusters")
		b.run("create cluster", chromedp.Click(chromedp.CSS("#create-cluster-button")), chromedp.WaitVisible(chromedp.CSS("#cluster-state")))
		u := b.location()
		clusterID = u[strings.LastIndex(u, "/")+1:]
		page := "/console/clusters/" + clusterID
		b.waitText(page, "#cluster-state", "UNINITIALIZED")
		zones := hsm.Subnets("us-east-1")
		for _, z := range zones[:2] {
			b.open(page)
			b.submit("add HSM in "+z.AvailabilityZone, chromedp.SetValue(chromedp.CSS("#az"), z.AvailabilityZone),
				chromedp.Click(chromedp.CSS("#add-hsm-button")))
			b.waitText(page, "#hsm-table", z.AvailabilityZone)
		}
		deadline := waitDeadline(t)
		for strings.Count(b.text("#hsm-table"), "ACTIVE") < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("HSMs not ACTIVE: %s", b.text("#hsm-table"))
			}
			time.Sleep(300 * time.Millisecond)
			b.open(page)
		}
		b.waitText(page, "#csr-link", "Download the cluster CSR")
		b.screenshot("05-cluster-uninitialized")
		// Download the CSR as the page's link does, sign it with the
		// customer's CA (as `openssl x509 -req -CA customerCA.crt` does).
		csr := get(b, "download CSR", chromedp.Evaluate[string](fmt.Sprintf(`fetch(%q).then(r => r.text())`, page+"/csr"), chromedp.EvalAwaitPromise))
		if !strings.Contains(csr, "CERTIFICATE REQUEST") {
			t.Fatalf("the CSR download is %q", csr)
		}
		signed := filepath.Join(files, clusterID+"_CustomerHsmCertificate.crt")
		anchor := filepath.Join(files, "customerCA.crt")
		os.WriteFile(signed, []byte(h.ca.signCSR(t, csr)), 0o600)
		os.WriteFile(anchor, []byte(h.ca.pem), 0o600)
		b.submit("initialize", chromedp.SetUploadFiles(chromedp.CSS("#signed_cert"), []string{signed}),
			chromedp.SetUploadFiles(chromedp.CSS("#trust_anchor"), []string{anchor}), chromedp.Click(chromedp.CSS("#initialize-button")))
		b.waitText(page, "#cluster-state", "INITIALIZED")
		// Activation and kmsuser are the cluster owner's commands, as the
		// CloudHSM CLI is in AWS (the page says which to run).
		if err := h.owner("activate", "--cluster-id", clusterID, "--co-password", coPassword); err != nil {
			t.Fatal(err)
		}
		if err := h.owner("create-user", "--cluster-id", clusterID, "--type", "CU", "--username", "kmsuser", "--password", "kmsPswd1", "--co-password", coPassword); err != nil {
			t.Fatal(err)
		}
		b.waitText(page, "#cluster-state", "ACTIVE")
		b.screenshot("06-cluster-active")
		b.open("/console/clusters")
		if got := b.text("#clusters"); !strings.Contains(got, clusterID) || !strings.Contains(got, "ACTIVE") {
			t.Fatalf("clusters page: %s", got)
		}
	})
	if clusterID == "" {
		t.Fatal("no cluster")
	}

	var storeID string
	t.Run("create the CloudHSM key store (trust anchor upload) and connect", func(t *testing.T) {
		b.t = t
		b.open("/console/keystores?type=cloudhsm")
		b.run("create store page", chromedp.Click(chromedp.CSS("#create-store")), chromedp.WaitVisible(chromedp.CSS("#store-form")))
		b.run("fill", chromedp.SendKeys(chromedp.CSS("#name"), "ExampleCloudHSMKeyStore"),
			chromedp.Click(chromedp.CSS("#cluster-"+clusterID)),
			chromedp.SetUploadFiles(chromedp.CSS("#trust_anchor_file"), []string{filepath.Join(files, "customerCA.crt")}),
			chromedp.SendKeys(chromedp.CSS("#password"), "kmsPswd1"))
		b.screenshot("07-create-cloudhsm-store")
		b.run("create", chromedp.Click(chromedp.CSS("#create")), chromedp.WaitVisible(chromedp.CSS("#store-id")))
		storeID = b.text("#store-id")
		if !storeIDRe.MatchString(storeID) || b.text("#store-state") != "DISCONNECTED" {
			t.Fatalf("new store %q in state %q", storeID, b.text("#store-state"))
		}
		b.submit("connect", chromedp.Click(chromedp.CSS("#connect")))
		// The page refreshes itself while CONNECTING.
		b.waitText("", "#store-state", "CONNECTED")
		b.open("/console/keystores?type=cloudhsm")
		if got := b.text("#stores"); !strings.Contains(got, storeID) || !strings.Contains(got, "CONNECTED") {
			t.Fatalf("key stores page: %s", got)
		}
		b.screenshot("08-cloudhsm-stores")
		// The cluster menu no longer offers the cluster.
		b.open("/console/keystores/create?type=cloudhsm")
		if got := b.text("#store-form"); !strings.Contains(got, "already used by the key store ExampleCloudHSMKeyStore") {
			t.Fatalf("the cluster menu after the store's creation:\n%s", got)
		}
	})

	var keyID string
	t.Run("create a key in the CloudHSM key store through the wizard", func(t *testing.T) {
		b.t = t
		b.open("/console/keys")
		b.run("create key", chromedp.Click(chromedp.CSS("#create-key")), chromedp.WaitVisible(chromedp.CSS("#wizard")))
		b.run("advanced options", chromedp.Click(chromedp.CSS("#advanced summary")), chromedp.Click(chromedp.CSS("#origin-cloudhsm")),
			chromedp.Click(chromedp.CSS("#store-"+storeID)))
		b.screenshot("09-wizard-origin")
		b.run("step 2", chromedp.Click(chromedp.CSS("#next")), chromedp.WaitVisible(chromedp.CSS("#alias")),
			chromedp.SendKeys(chromedp.CSS("#alias"), "ExampleCloudHSMKey"), chromedp.SendKeys(chromedp.CSS("#description"), "key in a CloudHSM key store"),
			chromedp.SendKeys(chromedp.CSS("#tag-key-0"), "Project"), chromedp.SendKeys(chromedp.CSS("#tag-value-0"), "seeds"))
		b.run("step 3", chromedp.Click(chromedp.CSS("#next")), chromedp.WaitVisible(chromedp.CSS("#admins")),
			chromedp.SendKeys(chromedp.CSS("#admins"), b.text("#caller")))
		b.run("step 4", chromedp.Click(chromedp.CSS("#next")), chromedp.WaitVisible(chromedp.CSS("#users")),
			chromedp.SendKeys(chromedp.CSS("#users"), b.text("#caller")))
		b.run("review", chromedp.Click(chromedp.CSS("#next")), chromedp.WaitVisible(chromedp.CSS("#policy")))
		policy := get(b, "read policy", chromedp.Value(chromedp.CSS("#policy")))
		for _, want := range []string{"Enable IAM User Permissions", "Allow access for Key Administrators", "kms:ScheduleKeyDeletion", "Allow use of the key", b.text("#caller")} {
			if !strings.Contains(policy, want) {
				t.Fatalf("the generated key policy lacks %q:\n%s", want, policy)
			}
		}
		// Edit the reviewed policy: name the use statement differently.
		edited := strings.Replace(policy, "Allow use of the key", "Allow use of the key by the seeds", 1)
		b.run("edit policy", chromedp.SetValue(chromedp.CSS("#policy"), edited))
		if got := b.text("#review"); !strings.Contains(got, storeID) || !strings.Contains(got, "AWS_CLOUDHSM") {
			t.Fatalf("review: %s", got)
		}
		b.screenshot("10-wizard-review")
		b.run("finish", chromedp.Click(chromedp.CSS("#finish")), chromedp.WaitVisible(chromedp.CSS("#key-cluster-id")))
		u := b.location()
		keyID = u[strings.LastIndex(u, "/")+1:]
		if got := b.text("#key-origin"); got != "AWS_CLOUDHSM" {
			t.Fatalf("origin %q", got)
		}
		k, err := h.KMS.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(keyID), PolicyName: aws.String("default")})
		if err != nil || !strings.Contains(aws.ToString(k.Policy), "Allow use of the key by the seeds") {
			t.Fatalf("the key's policy is not the edited one: %v", err)
		}
	})

	t.Run("keys page: Custom key store ID column; detail page: cluster id", func(t *testing.T) {
		b.t = t
		b.open("/console/keys")
		b.run("column chooser", chromedp.Click(chromedp.CSS("details.columns summary")),
			chromedp.Click(chromedp.CSS(`input[name=col][value=store]`)), chromedp.Click(chromedp.CSS(`input[name=col][value=origin]`)),
			chromedp.Click(chromedp.CSS("#apply")), chromedp.WaitVisible(chromedp.CSS("td.storeid")))
		table := b.text("#keys")
		if !strings.Contains(table, "Custom key store ID") || !strings.Contains(table, storeID) || !strings.Contains(table, "ExampleCloudHSMKey") {
			t.Fatalf("keys table:\n%s", table)
		}
		b.screenshot("02-keys-with-store-column")
		b.run("open key", chromedp.Click(chromedp.CSS("a.keyid")), chromedp.WaitVisible(chromedp.CSS("#key-cluster-id")))
		if got := b.text("#key-cluster-id"); got != clusterID {
			t.Fatalf("cluster id %q, want %s", got, clusterID)
		}
		if got := b.text("#key-store-name"); got != "ExampleCloudHSMKeyStore" {
			t.Fatalf("store name %q", got)
		}
		if got := b.text("#key-store-id"); got != storeID {
			t.Fatalf("store id %q", got)
		}
		b.screenshot("03-key-detail")
		// Schedule deletion (typed confirmation), cancel it, enable again.
		b.run("schedule deletion", chromedp.SetValue(chromedp.CSS("#days"), "7"), chromedp.SendKeys(chromedp.CSS("#confirm-del"), "delete"),
			chromedp.Click(chromedp.CSS("#schedule-deletion")), chromedp.WaitVisible(chromedp.CSS("#cancel-deletion")))
		if got := b.text("#key-state"); got != "PendingDeletion" {
			t.Fatalf("after scheduling deletion the key is %q", got)
		}
		b.run("cancel deletion", chromedp.Click(chromedp.CSS("#cancel-deletion")), chromedp.WaitVisible(chromedp.CSS("#enable-key")))
		b.run("enable", chromedp.Click(chromedp.CSS("#enable-key")), chromedp.WaitVisible(chromedp.CSS("#disable-key")))
		if got := b.text("#key-state"); got != "Enabled" {
			t.Fatalf("after cancel and enable the key is %q", got)
		}
	})

	t.Run("disconnect the CloudHSM key store", func(t *testing.T) {
		b.t = t
		b.open("/console/keystores/" + storeID)
		b.submit("disconnect", chromedp.Click(chromedp.CSS("#disconnect")))
		b.waitText("", "#store-state", "DISCONNECTED")
		b.open("/console/keys/" + keyID)
		if got := b.text("#key-state"); got != "Unavailable" {
			t.Fatalf("a key of a disconnected store is %q, want Unavailable", got)
		}
		// Edit while DISCONNECTED: a new name and a wrong kmsuser password;
		// connecting then FAILS with INVALID_CREDENTIALS and its advice.
		b.open("/console/keystores/" + storeID)
		b.submit("edit", chromedp.SendKeys(chromedp.CSS("#name"), "ExampleCloudHSMKeyStore2"), chromedp.SendKeys(chromedp.CSS("#password"), "wrongPswd1"),
			chromedp.Click(chromedp.CSS("#save-store")))
		if got := b.text("h1"); got != "ExampleCloudHSMKeyStore2" {
			t.Fatalf("after the rename the store is %q", got)
		}
		b.submit("connect", chromedp.Click(chromedp.CSS("#connect")))
		b.waitText("", "#store-state", "FAILED")
		if got := b.text("#store-error"); !strings.Contains(got, "INVALID_CREDENTIALS") || !strings.Contains(got, "kmsuser") {
			t.Fatalf("FAILED store shows %q", got)
		}
		b.screenshot("13-store-failed")
		b.submit("disconnect the failed store", chromedp.Click(chromedp.CSS("#disconnect")))
		b.waitText("", "#store-state", "DISCONNECTED")
	})

	var xksKeyID string
	t.Run("external key store from an uploaded proxy configuration file", func(t *testing.T) {
		b.t = t
		// The file a proxy vendor hands out (what `keyhold xks-proxy init`
		// prints), with the endpoint the proxy really listens on.
		cfgFile := filepath.Join(files, "xks-proxy-config.json")
		doc, _ := json.MarshalIndent(map[string]any{
			"XksProxyUriEndpoint": "https://" + pln.Addr.String(), "XksProxyUriPath": res.XksProxyUriPath,
			"XksProxyConnectivity": "PUBLIC_ENDPOINT",
			"XksProxyAuthenticationCredential": map[string]string{"AccessKeyId": res.XksProxyAuthenticationCredential.AccessKeyId,
				"RawSecretAccessKey": res.XksProxyAuthenticationCredential.RawSecretAccessKey}}, "", "  ")
		os.WriteFile(cfgFile, doc, 0o600)
		b.open("/console/keystores?type=xks")
		b.run("create store page", chromedp.Click(chromedp.CSS("#create-store")), chromedp.WaitVisible(chromedp.CSS("#proxy_config")),
			chromedp.SendKeys(chromedp.CSS("#name"), "ExampleExternalKeyStore"),
			chromedp.SetUploadFiles(chromedp.CSS("#proxy_config"), []string{cfgFile}))
		var endpoint string
		deadline := waitDeadline(t)
		for endpoint == "" && time.Now().Before(deadline) {
			endpoint = get(b, "read endpoint", chromedp.Value(chromedp.CSS("#endpoint")))
			time.Sleep(100 * time.Millisecond)
		}
		if endpoint != "https://"+pln.Addr.String() {
			t.Fatalf("the proxy configuration file filled the endpoint with %q", endpoint)
		}
		b.screenshot("11-create-xks-store")
		b.run("create", chromedp.Click(chromedp.CSS("#create")), chromedp.WaitVisible(chromedp.CSS("#store-id")))
		xksID := b.text("#store-id")
		b.submit("connect", chromedp.Click(chromedp.CSS("#connect")))
		b.waitText("", "#store-state", "CONNECTED")
		b.open("/console/keystores?type=xks")
		b.screenshot("04-external-key-stores")
		// A key in it through the wizard.
		b.open("/console/keys/create")
		b.run("advanced options", chromedp.Click(chromedp.CSS("#advanced summary")), chromedp.Click(chromedp.CSS("#origin-xks")),
			chromedp.Click(chromedp.CSS("#store-"+xksID)), chromedp.SendKeys(chromedp.CSS("#xks_key_id"), res.XksKeyId))
		for i := 0; i < 4; i++ {
			b.run("next", chromedp.Click(chromedp.CSS("#next")), chromedp.WaitVisible(chromedp.CSS(`#wizard[data-step="`+fmt.Sprint(i+2)+`"]`)))
		}
		b.run("finish", chromedp.Click(chromedp.CSS("#finish")), chromedp.WaitVisible(chromedp.CSS("#key-xks-id")))
		u := b.location()
		xksKeyID = u[strings.LastIndex(u, "/")+1:]
		if got := b.text("#key-xks-id"); got != res.XksKeyId {
			t.Fatalf("external key id %q, want %s", got, res.XksKeyId)
		}
		// Deleting a connected store that holds a key is refused with the
		// API's exception, shown in place.
		b.open("/console/keystores/" + xksID)
		b.run("delete", chromedp.SendKeys(chromedp.CSS("#confirm-store"), "delete"), chromedp.Click(chromedp.CSS("#delete-store")),
			chromedp.WaitVisible(chromedp.CSS("#error")))
		if got := b.text("#error"); !strings.Contains(got, "CustomKeyStore") {
			t.Fatalf("deleting a connected store with a key shows %q", got)
		}
		// The CloudHSM store is DISCONNECTED: the chooser says why it is
		// not eligible.
		b.open("/console/keys/create")
		if got := b.text("#store-chooser"); !strings.Contains(got, "Not eligible: the key store is DISCONNECTED") {
			t.Fatalf("store chooser:\n%s", got)
		}
	})

	t.Run("a denied action shows AccessDeniedException, audited as the console", func(t *testing.T) {
		b.t = t
		b.run("sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#signin")))
		admin := h.iam(t, h.AccessKey, h.Secret)
		ak, sk := h.newUser(t, admin, "console-reader", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:ListKeys","kms:ListAliases","kms:DescribeKey","kms:GetKeyPolicy","kms:ListResourceTags","kms:DescribeCustomKeyStores"],"Resource":"*"}]}`)
		signIn(ak, sk)
		b.open("/console/keys/" + xksKeyID)
		b.run("disable", chromedp.Click(chromedp.CSS("#disable-key")), chromedp.WaitVisible(chromedp.CSS("#error")))
		got := b.text("#error")
		if !strings.Contains(got, "AccessDeniedException") || !strings.Contains(got, "is not authorized to perform: kms:DisableKey") {
			t.Fatalf("a denied Disable shows %q", got)
		}
		b.screenshot("12-access-denied")
		found := false
		f, err := os.Open(filepath.Join(h.dataDir, "audit", "cloudtrail.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev struct {
				EventName, UserAgent, ErrorCode string
				UserIdentity                    struct{ AccessKeyId string }
			}
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.EventName == "DisableKey" && ev.UserAgent == console.UserAgent &&
				ev.ErrorCode == "AccessDeniedException" && ev.UserIdentity.AccessKeyId == ak {
				found = true
			}
		}
		if !found {
			t.Fatal("the audit trail has no denied DisableKey event from the console's user agent")
		}
	})

	t.Run("sign-out ends the session", func(t *testing.T) {
		b.t = t
		b.run("sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#signin")))
		b.open("/console/keys")
		if u := b.location(); !strings.Contains(u, "/console/signin") {
			t.Fatalf("after sign-out /console/keys shows %s", u)
		}
	})
}
