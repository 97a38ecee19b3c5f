package cli

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type served struct {
	endpoint string
	dataDir  string
	log      *syncBuffer
	client   *kms.Client
	stop     func() int
}

// serveInProcess runs `keyhold serve` through Main on 127.0.0.1:0 and waits
// for its "keyhold serving" line.
func serveInProcess(t *testing.T, args ...string) *served {
	t.Helper()
	dir := t.TempDir()
	log := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	all := append([]string{"serve", "--addr", "127.0.0.1:0", "--log-format", "json"}, args...)
	hasDir := false
	for _, a := range args {
		hasDir = hasDir || a == "--data-dir" || a == "--in-memory"
	}
	if !hasDir {
		all = append(all, "--data-dir", dir)
	}
	go func() { done <- MainContext(ctx, all, io.Discard, log) }()
	s := &served{log: log}
	// Starting takes as long as a busy machine needs; only a server that
	// never starts runs into the test binary's deadline (less a margin to
	// say so).
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Minute)
	}
	deadline = deadline.Add(-time.Until(deadline) / 10)
	for s.endpoint == "" {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("keyhold serve did not start:\n%s", log.String())
		}
		select {
		case code := <-done:
			t.Fatalf("keyhold serve exited %d:\n%s", code, log.String())
		case <-time.After(20 * time.Millisecond):
		}
		for _, line := range strings.Split(log.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "keyhold serving" {
				s.endpoint, _ = m["endpoint"].(string)
				s.dataDir, _ = m["data_dir"].(string)
			}
		}
	}
	stopped := false
	s.stop = func() int {
		if stopped {
			return 0
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { s.stop() })
	ak, sk := readCreds(t, filepath.Join(s.dataDir, "credentials"))
	s.client = kms.New(kms.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(ak, sk, "")})
	return s
}

func readCreds(t *testing.T, path string) (string, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ak, sk string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			ak = strings.TrimSpace(v)
		case "aws_secret_access_key":
			sk = strings.TrimSpace(v)
		}
	}
	return ak, sk
}

// TestServeLogsAndMetrics runs calls, then checks one log line per
// request with its fields, no secret in any line, and the metrics parsed
// by the Prometheus text parser.
func TestServeLogsAndMetrics(t *testing.T) {
	s := serveInProcess(t)
	ctx := context.Background()
	key, err := s.client.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	plaintext := []byte("the-plaintext-must-never-be-logged")
	enc, err := s.client.Encrypt(ctx, &kms.EncryptInput{KeyId: key.KeyMetadata.KeyId, Plaintext: plaintext})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := s.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	if err != nil {
		t.Fatal(err)
	}
	dk, err := s.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: key.KeyMetadata.KeyId, NumberOfBytes: aws.Int32(32)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/missing")}); err == nil {
		t.Fatal("DescribeKey of a missing alias succeeded")
	}

	resp, err := http.Get(s.endpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	count := func(op, code string) float64 {
		for _, m := range fams["keyhold_requests_total"].GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["service"] == "kms" && labels["operation"] == op && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
		return 0
	}
	if count("Encrypt", "") != 1 || count("Decrypt", "") != 1 || count("DescribeKey", "NotFoundException") != 1 {
		t.Errorf("request counters: Encrypt %v Decrypt %v DescribeKey/NotFound %v", count("Encrypt", ""), count("Decrypt", ""), count("DescribeKey", "NotFoundException"))
	}
	for _, name := range []string{"keyhold_request_duration_seconds", "keyhold_audit_write_duration_seconds", "keyhold_audit_queue_depth",
		"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("metric %s missing", name)
		}
	}
	checkStoreMetrics(t, fams)
	var hist uint64
	for _, m := range fams["keyhold_request_duration_seconds"].GetMetric() {
		hist += m.GetHistogram().GetSampleCount()
	}
	if hist < 5 {
		t.Errorf("latency histogram has %d samples, want >= 5", hist)
	}

	if code := s.stop(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	logText := s.log.String()
	_, sk := readCreds(t, filepath.Join(s.dataDir, "credentials"))
	secrets := map[string]string{
		"plaintext":           string(plaintext),
		"plaintext (base64)":  base64.StdEncoding.EncodeToString(plaintext),
		"decrypted plaintext": base64.StdEncoding.EncodeToString(dec.Plaintext),
		"data key":            base64.StdEncoding.EncodeToString(dk.Plaintext),
		"secret access key":   sk,
	}
	for what, v := range secrets {
		if strings.Contains(logText, v) {
			t.Errorf("the log holds the %s", what)
		}
	}
	var requests int
	for _, line := range strings.Split(strings.TrimSpace(logText), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if m["msg"] != "request" {
			continue
		}
		requests++
		for _, f := range []string{"request_id", "operation", "principal", "status", "latency_ms"} {
			if _, ok := m[f]; !ok {
				t.Errorf("request line without %s: %s", f, line)
			}
		}
		if m["operation"] == "DescribeKey" && (m["error_code"] != "NotFoundException" || m["status"] != float64(400)) {
			t.Errorf("error line: %s", line)
		}
	}
	if requests != 5 {
		t.Errorf("%d request lines, want 5:\n%s", requests, logText)
	}
}

// checkStoreMetrics: after CreateKey, Encrypt, Decrypt, GenerateDataKey and a
// DescribeKey of a missing alias, the store histogram has samples under
// Store method names and the missing alias counted as not_found.
func checkStoreMetrics(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	calls := map[string]uint64{}
	for _, m := range fams["keyhold_store_call_duration_seconds"].GetMetric() {
		h := m.GetHistogram()
		if len(h.GetBucket()) == 0 || h.GetSampleSum() < 0 {
			t.Errorf("store histogram without buckets: %v", m)
		}
		calls[labelsOf(m)["operation"]] += h.GetSampleCount()
	}
	for _, op := range []string{"CreateKey", "GetAlias"} {
		if calls[op] == 0 {
			t.Errorf("no keyhold_store_call_duration_seconds samples for %s; have %v", op, calls)
		}
	}
	errs := map[string]float64{}
	for _, m := range fams["keyhold_store_call_errors_total"].GetMetric() {
		l := labelsOf(m)
		errs[l["operation"]+" "+l["error"]] += m.GetCounter().GetValue()
	}
	if errs["GetAlias not_found"] < 1 {
		t.Errorf("the missing alias is not counted as GetAlias not_found: %v", errs)
	}
	for k := range errs {
		if strings.HasSuffix(k, " other") || strings.HasSuffix(k, " unavailable") {
			t.Errorf("store faults during a clean run: %v", errs)
		}
	}
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// TestSIGHUPReopensAuditFile renames the audit file away, as logrotate
// does, sends SIGHUP and checks that new events go to a new file.
func TestSIGHUPReopensAuditFile(t *testing.T) {
	s := serveInProcess(t)
	ctx := context.Background()
	if _, err := s.client.ListKeys(ctx, &kms.ListKeysInput{}); err != nil {
		t.Fatal(err)
	}
	path := auditPath(s.dataDir)
	waitFor(t, func() bool { b, _ := os.ReadFile(path); return strings.Contains(string(b), `"ListKeys"`) })
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(s.log.String(), "audit file reopened") })
	if _, err := s.client.ListAliases(ctx, &kms.ListAliasesInput{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { b, _ := os.ReadFile(path); return strings.Contains(string(b), `"ListAliases"`) })
	old, _ := os.ReadFile(path + ".1")
	if strings.Contains(string(old), `"ListAliases"`) || !strings.Contains(string(old), `"ListKeys"`) {
		t.Fatalf("rotated file:\n%s", old)
	}
	// keyhold audit reads both.
	code, out, errOut := run("audit", "--data-dir", s.dataDir)
	if code != 0 || !strings.Contains(out, "ListKeys") || !strings.Contains(out, "ListAliases") {
		t.Fatalf("keyhold audit exit %d: %s %s", code, out, errOut)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if ok() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not reached in 5s")
}

// TestSeedOnTwoDataDirectories applies one seed file to two fresh data
// directories: each decrypts the other's ciphertexts; applying it again
// changes nothing.
func TestSeedOnTwoDataDirectories(t *testing.T) {
	seed := filepath.Join(t.TempDir(), "seed.json")
	material := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	os.WriteFile(seed, []byte(`{
  "Keys": [
    {"KeyId": "11111111-2222-3333-4444-555555555555", "Description": "seeded", "KeyMaterial": "`+material+`",
     "Tags": [{"TagKey": "team", "TagValue": "payments"}], "Aliases": ["alias/payments"]},
    {"KeyId": "66666666-7777-8888-9999-000000000000", "Enabled": false}
  ],
  "Aliases": [{"AliasName": "alias/other", "TargetKeyId": "66666666-7777-8888-9999-000000000000"}]
}`), 0o600)
	ctx := context.Background()
	a := serveInProcess(t, "--seed", seed, "--account-id", "111122223333")
	b := serveInProcess(t, "--seed", seed, "--account-id", "111122223333")
	for _, s := range []*served{a, b} {
		d, err := s.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/payments")})
		if err != nil {
			t.Fatal(err)
		}
		if *d.KeyMetadata.KeyId != "11111111-2222-3333-4444-555555555555" || *d.KeyMetadata.Arn != "arn:aws:kms:us-east-1:111122223333:key/11111111-2222-3333-4444-555555555555" {
			t.Fatalf("seeded key: %+v", d.KeyMetadata)
		}
		d2, err := s.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/other")})
		if err != nil || d2.KeyMetadata.Enabled {
			t.Fatalf("disabled seeded key: %v %+v", err, d2)
		}
		tags, err := s.client.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: d.KeyMetadata.KeyId})
		if err != nil || len(tags.Tags) != 1 || *tags.Tags[0].TagValue != "payments" {
			t.Fatalf("tags: %v %+v", err, tags)
		}
	}
	for _, pair := range [][2]*served{{a, b}, {b, a}} {
		enc, err := pair[0].client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/payments"), Plaintext: []byte("hello")})
		if err != nil {
			t.Fatal(err)
		}
		dec, err := pair[1].client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
		if err != nil || string(dec.Plaintext) != "hello" {
			t.Fatalf("cross decrypt: %v %+v", err, dec)
		}
	}
	// A restart applies the seed again: nothing new.
	a.stop()
	c := serveInProcess(t, "--seed", seed, "--data-dir", a.dataDir)
	if !strings.Contains(c.log.String(), `"keys_created":0`) {
		t.Errorf("second application created keys:\n%s", c.log.String())
	}
	// And another account id on the same directory is refused.
	c.stop()
	if code, _, errOut := run("serve", "--data-dir", a.dataDir, "--account-id", "999999999999", "--addr", "127.0.0.1:0"); code != 1 || !strings.Contains(errOut, "already belongs to account 111122223333") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// TestInMemory: nothing is left on disk after the server stops.
func TestInMemory(t *testing.T) {
	if _, err := os.Stat("/dev/shm"); err != nil {
		t.Skip("no /dev/shm on this system")
	}
	s := serveInProcess(t, "--in-memory")
	if !strings.HasPrefix(s.dataDir, "/dev/shm/") {
		t.Fatalf("in-memory data dir %s", s.dataDir)
	}
	if _, err := s.client.CreateKey(context.Background(), &kms.CreateKeyInput{}); err != nil {
		t.Fatal(err)
	}
	if code := s.stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, err := os.Stat(s.dataDir); !os.IsNotExist(err) {
		t.Fatalf("%s still exists after stop: %v", s.dataDir, err)
	}
	if code, _, errOut := run("serve", "--in-memory", "--data-dir", t.TempDir()); code != 1 || !strings.Contains(errOut, "exclude each other") {
		t.Fatalf("in-memory with data-dir: %d %s", code, errOut)
	}
}

// TestOfflineAdminRecoversCredentials deletes the credentials file of a
// stopped server and mints a new admin key offline.
func TestOfflineAdminRecoversCredentials(t *testing.T) {
	s := serveInProcess(t)
	dir := s.dataDir
	// While it runs, offline admin is refused.
	if code, _, errOut := run("admin", "create-access-key", "--offline", "--data-dir", dir); code != 1 || !strings.Contains(errOut, "locked by another keyhold") {
		t.Fatalf("offline admin beside a running server: %d %s", code, errOut)
	}
	s.stop()
	os.Remove(filepath.Join(dir, "credentials"))
	code, out, errOut := run("admin", "create-access-key", "--offline", "--data-dir", dir, "--write-credentials")
	if code != 0 || !strings.Contains(out, "AccessKey.SecretAccessKey: ") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	s2 := serveInProcess(t, "--data-dir", dir)
	if _, err := s2.client.ListKeys(context.Background(), &kms.ListKeysInput{}); err != nil {
		t.Fatalf("the recovered credential does not work: %v", err)
	}
}
