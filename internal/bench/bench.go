// Package bench is `keyhold bench`: a load generator for any AWS-KMS-compatible
// endpoint (keyhold, moto, AWS itself) and for XKS proxies. Every request is
// signed like an SDK does it (sigv4.Signer), so the numbers include the
// server's signature check.
//
// It must never send load to a non-loopback endpoint unless the user passed
// --allow-remote, and never print credentials or plaintext.
package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/keyhold/keyhold/internal/sigv4"
)

// config is the parsed command line.
type config struct {
	endpoint    string
	op          string
	concurrency int
	duration    time.Duration
	size        int
	keyID       string
	region      string
	credsFile   string
	profile     string
	allowRemote bool
	jsonOut     bool
	caFile      string
	randomKeys  bool
	everyKey    bool
	requests    uint64
	keySpec     string
	signingAlg  string
}

// Report is what a run measured; it is also the --json output.
type Report struct {
	Op                string    `json:"op"`
	Endpoint          string    `json:"endpoint"`
	KeyID             string    `json:"key_id,omitempty"`
	KeySpec           string    `json:"key_spec,omitempty"`
	Concurrency       int       `json:"concurrency"`
	Size              int       `json:"size"`
	DurationSeconds   float64   `json:"duration_seconds"`
	Requests          uint64    `json:"requests"`
	Errors            uint64    `json:"errors"`
	RequestsPerSecond float64   `json:"requests_per_second"`
	LatencyMS         Latencies `json:"latency_ms"`
	FirstError        string    `json:"first_error,omitempty"`
	// KeysListed and ListSeconds: --random-keys and --every-key page
	// through ListKeys first.
	KeysListed  int     `json:"keys_listed,omitempty"`
	ListSeconds float64 `json:"list_seconds,omitempty"`
	Interrupted bool    `json:"interrupted,omitempty"` // stopped early by the caller's context
}

// Latencies are in milliseconds.
type Latencies struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

var ops = map[string]bool{"encrypt": true, "decrypt": true, "generate-data-key": true, "create-key": true, "describe-key": true, "xks-encrypt": true,
	"sign": true, "verify": true}

// Flags is bench's command line: AddFlags registers it on a flag set (the
// keyhold bench command's), Run checks it and runs the load.
type Flags struct{ c config }

// AddFlags registers bench's flags on fs.
func AddFlags(fs *pflag.FlagSet) *Flags {
	f := &Flags{}
	c := &f.c
	fs.StringVar(&c.endpoint, "endpoint", "", "KMS endpoint URL, or for xks-encrypt the XKS proxy URI prefix (e.g. https://127.0.0.1:9443/example/kms/xks/v1); required")
	fs.StringVar(&c.op, "op", "encrypt", "operation: encrypt|decrypt|generate-data-key|create-key|describe-key|sign|verify|xks-encrypt")
	fs.StringVar(&c.keySpec, "key-spec", "ECC_NIST_P256", "for sign and verify without --key-id: the KeySpec of the SIGN_VERIFY key bench creates")
	fs.StringVar(&c.signingAlg, "signing-algorithm", "", "for sign and verify: the SigningAlgorithm (default: the key's first)")
	fs.IntVar(&c.concurrency, "concurrency", 16, "concurrent requests in flight")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to send load")
	fs.IntVar(&c.size, "size", 32, "plaintext size in bytes (for generate-data-key: NumberOfBytes)")
	fs.StringVar(&c.keyID, "key-id", "", "key to use; without it bench creates one with CreateKey (required for xks-encrypt: the external key id)")
	fs.StringVar(&c.region, "region", "us-east-1", "region to sign for")
	fs.StringVar(&c.credsFile, "credentials-file", "", "AWS shared-credentials file (default: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, then ~/.aws/credentials)")
	fs.StringVar(&c.profile, "profile", "default", "profile in the credentials file")
	fs.BoolVar(&c.allowRemote, "allow-remote", false, "allow an endpoint that is not on this machine (loopback or localhost)")
	fs.BoolVar(&c.jsonOut, "json", false, "print one JSON object instead of text")
	fs.StringVar(&c.caFile, "ca-file", "", "PEM file of an extra CA to trust for HTTPS endpoints")
	fs.BoolVar(&c.randomKeys, "random-keys", false, "spread the requests over every key of the account (listed with ListKeys first), each request to a key picked at random (encrypt, generate-data-key, describe-key)")
	fs.BoolVar(&c.everyKey, "every-key", false, "like --random-keys, but the requests take the listed keys in turn, so that as many requests as keys touch every key once")
	fs.Uint64Var(&c.requests, "requests", 0, "stop after this many requests (0: no limit; --duration still bounds the run)")
	return f
}

// Run checks the flags and runs the load, printing the results to stdout;
// the first failed response goes to stderr.
func (f *Flags) Run(ctx context.Context, stdout, stderr io.Writer) error {
	if err := f.c.check(); err != nil {
		return err
	}
	return runConfig(ctx, f.c, stdout, stderr)
}

// Command runs `keyhold bench` with its flags (args excludes the word
// "bench") and prints the results to stdout; usage and the first failed
// response go to stderr. (keyhold's CLI uses AddFlags and Run.)
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	return runConfig(ctx, cfg, stdout, stderr)
}

func runConfig(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	creds, err := loadCredentials(cfg.credsFile, cfg.profile, os.Getenv)
	if err != nil {
		return err
	}
	rep, err := run(ctx, cfg, creds, stderr)
	if err != nil && !rep.Interrupted {
		return err
	}
	// An interrupted run still prints what it measured, then reports why it stopped.
	var perr error
	if cfg.jsonOut {
		perr = json.NewEncoder(stdout).Encode(rep)
	} else {
		perr = printText(stdout, rep)
	}
	if err != nil {
		return err
	}
	return perr
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := pflag.NewFlagSet("bench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	f := AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return f.c, err
	}
	if fs.NArg() > 0 {
		return f.c, fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	return f.c, f.c.check()
}

// check validates the flags.
func (c config) check() error {
	if c.endpoint == "" {
		return errors.New("bench: --endpoint is required")
	}
	if !ops[c.op] {
		return fmt.Errorf("bench: unknown --op %q (want encrypt, decrypt, generate-data-key, create-key, describe-key, sign, verify or xks-encrypt)", c.op)
	}
	if c.randomKeys && c.everyKey {
		return errors.New("bench: --random-keys and --every-key exclude each other")
	}
	if (c.randomKeys || c.everyKey) && (c.keyID != "" || (c.op != "encrypt" && c.op != "generate-data-key" && c.op != "describe-key")) {
		return errors.New("bench: --random-keys and --every-key go with --op encrypt, generate-data-key or describe-key, without --key-id")
	}
	if c.concurrency < 1 || c.concurrency > 4096 {
		return errors.New("bench: --concurrency must be between 1 and 4096")
	}
	if c.duration <= 0 {
		return errors.New("bench: --duration must be positive")
	}
	maxSize := 4096
	switch c.op {
	case "generate-data-key":
		maxSize = 1024
	case "xks-encrypt":
		maxSize = 4300
	}
	if c.size < 1 || c.size > maxSize {
		return fmt.Errorf("bench: --size must be between 1 and %d for %s", maxSize, c.op)
	}
	if c.op == "xks-encrypt" && c.keyID == "" {
		return errors.New("bench: --key-id (the external key id) is required for xks-encrypt")
	}
	u, err := url.Parse(c.endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("bench: --endpoint must be an http:// or https:// URL, got %q", c.endpoint)
	}
	if !c.allowRemote && !isLocal(u.Hostname()) {
		return fmt.Errorf("bench: refusing to send load to %s: it is not a loopback address or localhost; pass --allow-remote if you mean it", u.Hostname())
	}
	return nil
}

func isLocal(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func newClient(cfg config) (*http.Client, error) {
	tr := &http.Transport{
		Proxy:               nil, // load goes straight to the endpoint that was checked
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2 * cfg.concurrency,
		MaxIdleConnsPerHost: 2 * cfg.concurrency,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		DisableCompression:  true,
	}
	if cfg.caFile != "" {
		pem, err := os.ReadFile(cfg.caFile)
		if err != nil {
			return nil, fmt.Errorf("bench: --ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("bench: --ca-file %s holds no PEM certificate", cfg.caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// target builds one kind of request; body may vary per call (n counts calls).
type target struct {
	url         string
	contentType string
	amzTarget   string // X-Amz-Target, KMS only
	body        func(n uint64) []byte
}

// caller sends signed requests.
type caller struct {
	client *http.Client
	signer *sigv4.Signer
}

// do sends one request and returns the status and the response body.
func (c *caller) do(ctx context.Context, t target, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", t.contentType)
	if t.amzTarget != "" {
		req.Header.Set("X-Amz-Target", t.amzTarget)
	}
	if err := c.signer.Sign(req, body); err != nil {
		return 0, nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// kms calls one KMS operation once (setup calls) and decodes the answer.
func (c *caller) kms(ctx context.Context, endpoint, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	status, resp, err := c.do(ctx, target{url: endpoint, contentType: "application/x-amz-json-1.1", amzTarget: "TrentService." + op}, body)
	if err != nil {
		return fmt.Errorf("bench: %s: %w", op, err)
	}
	if status/100 != 2 {
		return fmt.Errorf("bench: %s: HTTP %d: %s", op, status, clip(resp))
	}
	if err := json.Unmarshal(resp, out); err != nil {
		return fmt.Errorf("bench: %s: decoding the response: %w", op, err)
	}
	return nil
}

func clip(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	return s
}

type createKeyOut struct {
	KeyMetadata struct{ KeyId string }
}

// prepare does the setup calls and returns what the load loop sends; rep
// gets what the setup measured.
func prepare(ctx context.Context, cfg config, c *caller, rep *Report) (target, string, error) {
	plain := make([]byte, cfg.size)
	if _, err := rand.Read(plain); err != nil {
		return target{}, "", err
	}
	b64 := base64.StdEncoding.EncodeToString(plain)
	kmsTarget := func(op string, in any) (target, error) {
		body, err := json.Marshal(in)
		if err != nil {
			return target{}, err
		}
		return target{url: cfg.endpoint, contentType: "application/x-amz-json-1.1", amzTarget: "TrentService." + op,
			body: func(uint64) []byte { return body }}, nil
	}

	if cfg.op == "xks-encrypt" {
		prefix := strings.TrimRight(cfg.endpoint, "/")
		arn := "arn:aws:kms:" + cfg.region + ":111122223333:key/keyhold-bench"
		return target{
			url:         prefix + "/keys/" + url.PathEscape(cfg.keyID) + "/encrypt",
			contentType: "application/json",
			body: func(n uint64) []byte {
				// With a CDIV algorithm, as KMS (and keyhold's XKS client) sends
				// it: the proxy then verifies its encrypt with a decrypt.
				return fmt.Appendf(nil, `{"requestMetadata":{"kmsRequestId":"keyhold-bench-%d","kmsOperation":"Encrypt","awsPrincipalArn":"arn:aws:iam::111122223333:user/keyhold-bench","kmsKeyArn":%q},"plaintext":%q,"encryptionAlgorithm":"AES_GCM","ciphertextDataIntegrityValueAlgorithm":"SHA_256"}`, n, arn, b64)
			},
		}, cfg.keyID, nil
	}

	if cfg.op == "create-key" {
		t, err := kmsTarget("CreateKey", map[string]string{"Description": "keyhold bench"})
		return t, "", err
	}

	if cfg.randomKeys || cfg.everyKey {
		t0 := time.Now()
		keys, err := listKeys(ctx, cfg.endpoint, c)
		if err != nil {
			return target{}, "", err
		}
		rep.KeysListed, rep.ListSeconds = len(keys), time.Since(t0).Seconds()
		if len(keys) == 0 {
			return target{}, "", errors.New("bench: --random-keys, --every-key: the account has no keys")
		}
		pick, desc := func(uint64) string { return keys[mrand.IntN(len(keys))] }, fmt.Sprintf("random of %d", len(keys))
		if cfg.everyKey {
			// n counts requests from 1.
			pick, desc = func(n uint64) string { return keys[(n-1)%uint64(len(keys))] }, fmt.Sprintf("each of %d in turn", len(keys))
		}
		t := target{url: cfg.endpoint, contentType: "application/x-amz-json-1.1"}
		switch cfg.op {
		case "encrypt":
			t.amzTarget = "TrentService.Encrypt"
			t.body = func(n uint64) []byte {
				return fmt.Appendf(nil, `{"KeyId":%q,"Plaintext":%q}`, pick(n), b64)
			}
		case "generate-data-key":
			t.amzTarget = "TrentService.GenerateDataKey"
			t.body = func(n uint64) []byte {
				return fmt.Appendf(nil, `{"KeyId":%q,"NumberOfBytes":%d}`, pick(n), cfg.size)
			}
		case "describe-key":
			t.amzTarget = "TrentService.DescribeKey"
			t.body = func(n uint64) []byte { return fmt.Appendf(nil, `{"KeyId":%q}`, pick(n)) }
		}
		return t, desc, nil
	}

	if cfg.op == "sign" || cfg.op == "verify" {
		return prepareSigning(ctx, cfg, c, plain, kmsTarget)
	}

	keyID := cfg.keyID
	if keyID == "" {
		var out createKeyOut
		if err := c.kms(ctx, cfg.endpoint, "CreateKey", map[string]string{"Description": "keyhold bench"}, &out); err != nil {
			return target{}, "", err
		}
		if out.KeyMetadata.KeyId == "" {
			return target{}, "", errors.New("bench: CreateKey returned no KeyMetadata.KeyId")
		}
		keyID = out.KeyMetadata.KeyId
	}
	switch cfg.op {
	case "encrypt":
		t, err := kmsTarget("Encrypt", map[string]string{"KeyId": keyID, "Plaintext": b64})
		return t, keyID, err
	case "generate-data-key":
		t, err := kmsTarget("GenerateDataKey", map[string]any{"KeyId": keyID, "NumberOfBytes": cfg.size})
		return t, keyID, err
	case "describe-key":
		t, err := kmsTarget("DescribeKey", map[string]string{"KeyId": keyID})
		return t, keyID, err
	case "decrypt":
		var out struct{ CiphertextBlob string }
		if err := c.kms(ctx, cfg.endpoint, "Encrypt", map[string]string{"KeyId": keyID, "Plaintext": b64}, &out); err != nil {
			return target{}, "", err
		}
		if out.CiphertextBlob == "" {
			return target{}, "", errors.New("bench: Encrypt returned no CiphertextBlob")
		}
		t, err := kmsTarget("Decrypt", map[string]string{"CiphertextBlob": out.CiphertextBlob})
		return t, keyID, err
	}
	return target{}, "", fmt.Errorf("bench: unknown op %q", cfg.op)
}

// listKeys pages through ListKeys for every key id of the account.
func listKeys(ctx context.Context, endpoint string, c *caller) ([]string, error) {
	var ids []string
	marker := ""
	for {
		in := map[string]any{"Limit": 1000}
		if marker != "" {
			in["Marker"] = marker
		}
		var out struct {
			Keys       []struct{ KeyId string }
			NextMarker string
			Truncated  bool
		}
		if err := c.kms(ctx, endpoint, "ListKeys", in, &out); err != nil {
			return nil, err
		}
		for _, k := range out.Keys {
			ids = append(ids, k.KeyId)
		}
		if !out.Truncated || out.NextMarker == "" {
			return ids, nil
		}
		marker = out.NextMarker
	}
}

// prepareSigning sets up sign and verify: a SIGN_VERIFY key (created with
// --key-spec unless --key-id names one), its algorithm, and for verify one
// signature made first. ED25519_PH_SHA_512 signs a 64-byte digest (AWS
// accepts it only as MessageType DIGEST); every other algorithm signs the
// --size byte message RAW.
func prepareSigning(ctx context.Context, cfg config, c *caller, plain []byte, kmsTarget func(string, any) (target, error)) (target, string, error) {
	var meta struct {
		KeyMetadata struct {
			KeyId             string
			SigningAlgorithms []string
		}
	}
	keyID := cfg.keyID
	if keyID == "" {
		if err := c.kms(ctx, cfg.endpoint, "CreateKey", map[string]string{"Description": "keyhold bench", "KeySpec": cfg.keySpec, "KeyUsage": "SIGN_VERIFY"}, &meta); err != nil {
			return target{}, "", err
		}
		keyID = meta.KeyMetadata.KeyId
	} else if err := c.kms(ctx, cfg.endpoint, "DescribeKey", map[string]string{"KeyId": keyID}, &meta); err != nil {
		return target{}, "", err
	}
	alg := cfg.signingAlg
	if alg == "" {
		if len(meta.KeyMetadata.SigningAlgorithms) == 0 {
			return target{}, "", fmt.Errorf("bench: key %s has no signing algorithms (is it a SIGN_VERIFY key?)", keyID)
		}
		alg = meta.KeyMetadata.SigningAlgorithms[0]
	}
	in := map[string]string{"KeyId": keyID, "SigningAlgorithm": alg, "MessageType": "RAW", "Message": base64.StdEncoding.EncodeToString(plain)}
	if alg == "ED25519_PH_SHA_512" {
		d := sha512.Sum512(plain)
		in["MessageType"], in["Message"] = "DIGEST", base64.StdEncoding.EncodeToString(d[:])
	}
	if cfg.op == "sign" {
		t, err := kmsTarget("Sign", in)
		return t, keyID, err
	}
	var sig struct{ Signature string }
	if err := c.kms(ctx, cfg.endpoint, "Sign", in, &sig); err != nil {
		return target{}, "", err
	}
	in["Signature"] = sig.Signature
	t, err := kmsTarget("Verify", in)
	return t, keyID, err
}

func run(ctx context.Context, cfg config, creds credentials, stderr io.Writer) (Report, error) {
	client, err := newClient(cfg)
	if err != nil {
		return Report{}, err
	}
	defer client.CloseIdleConnections()
	service := "kms"
	if cfg.op == "xks-encrypt" {
		service = "kms-xks-proxy"
	}
	c := &caller{client: client, signer: &sigv4.Signer{
		AccessKeyID: creds.accessKeyID, SecretAccessKey: creds.secretAccessKey, SessionToken: creds.sessionToken,
		Region: cfg.region, Service: service,
	}}
	var setup Report
	t, keyID, err := prepare(ctx, cfg, c, &setup)
	if err != nil {
		return Report{}, err
	}

	var (
		counter    atomic.Uint64
		errCount   atomic.Uint64
		firstOnce  sync.Once
		firstError string
		wg         sync.WaitGroup
	)
	hists := make([]histogram, cfg.concurrency)
	start := time.Now()
	deadline := start.Add(cfg.duration)
	for w := 0; w < cfg.concurrency; w++ {
		wg.Add(1)
		go func(h *histogram) {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				n := counter.Add(1)
				if cfg.requests > 0 && n > cfg.requests {
					return
				}
				t0 := time.Now()
				status, body, err := c.do(ctx, t, t.body(n))
				if ctx.Err() != nil {
					// Interrupted by the caller: not the server's failure.
					return
				}
				h.record(time.Since(t0))
				if err == nil && status/100 == 2 {
					continue
				}
				errCount.Add(1)
				firstOnce.Do(func() {
					if err != nil {
						firstError = err.Error()
					} else {
						firstError = fmt.Sprintf("HTTP %d: %s", status, clip(body))
					}
					fmt.Fprintf(stderr, "bench: first error: %s\n", firstError)
				})
			}
		}(&hists[w])
	}
	wg.Wait()
	elapsed := time.Since(start)

	var all histogram
	for i := range hists {
		all.merge(&hists[i])
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	rep := Report{
		Op: cfg.op, Endpoint: cfg.endpoint, KeyID: keyID, Concurrency: cfg.concurrency, Size: cfg.size, KeySpec: signingSpec(cfg),
		DurationSeconds: elapsed.Seconds(),
		Requests:        all.total,
		Errors:          errCount.Load(),
		LatencyMS: Latencies{
			P50: ms(all.quantile(0.50)), P90: ms(all.quantile(0.90)), P99: ms(all.quantile(0.99)), Max: ms(all.max),
		},
		FirstError: firstError,
		KeysListed: setup.KeysListed, ListSeconds: setup.ListSeconds,
	}
	if elapsed > 0 {
		rep.RequestsPerSecond = float64(all.total) / elapsed.Seconds()
	}
	if err := ctx.Err(); err != nil {
		rep.Interrupted = true
		return rep, fmt.Errorf("bench: interrupted: %w", err)
	}
	return rep, nil
}

func printText(w io.Writer, r Report) error {
	_, err := fmt.Fprintf(w, `op:           %s
endpoint:     %s
key:          %s
concurrency:  %d
size:         %d bytes
duration:     %.2fs
requests:     %d
errors:       %d
requests/s:   %.1f
latency (ms): p50 %.3f  p90 %.3f  p99 %.3f  max %.3f
`, r.Op, r.Endpoint, orDash(r.KeyID), r.Concurrency, r.Size, r.DurationSeconds, r.Requests, r.Errors,
		r.RequestsPerSecond, r.LatencyMS.P50, r.LatencyMS.P90, r.LatencyMS.P99, r.LatencyMS.Max)
	return err
}

// signingSpec is the spec of the key sign/verify created ("" otherwise).
func signingSpec(cfg config) string {
	if (cfg.op == "sign" || cfg.op == "verify") && cfg.keyID == "" {
		return cfg.keySpec
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
