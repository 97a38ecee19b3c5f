package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestStoreMetrics scrapes /metrics after a run of calls and parses it with
// the Prometheus text parser: store call latency by Store method, and its
// errors by kind. test.sh runs this package on SQLite and on PostgreSQL.
func TestStoreMetrics(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	k, err := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.KMS.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/metrics"), TargetKeyId: k.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.KMS.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/metrics"), TargetKeyId: k.KeyMetadata.KeyId}); err == nil {
		t.Fatal("a second CreateAlias of the same name succeeded")
	}
	if _, err := e.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/none")}); err == nil {
		t.Fatal("DescribeKey of a missing alias succeeded")
	}
	if _, err := e.KMS.ListKeys(ctx, &kms.ListKeysInput{}); err != nil {
		t.Fatal(err)
	}

	resp, err := http.Get(e.Endpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]uint64{}
	for _, m := range fams["keyhold_store_call_duration_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "operation" {
				calls[l.GetValue()] += m.GetHistogram().GetSampleCount()
			}
		}
	}
	for _, op := range []string{"CreateKey", "CreateAlias", "GetAlias", "ListKeyIDs"} {
		if calls[op] == 0 {
			t.Errorf("no store latency samples for %s: %v", op, calls)
		}
	}
	errs := map[string]float64{}
	for _, m := range fams["keyhold_store_call_errors_total"].GetMetric() {
		var op, kind string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "operation":
				op = l.GetValue()
			case "error":
				kind = l.GetValue()
			}
		}
		errs[op+" "+kind] += m.GetCounter().GetValue()
	}
	if errs["CreateAlias exists"] < 1 || errs["GetAlias not_found"] < 1 {
		t.Errorf("store errors: %v, want CreateAlias exists and GetAlias not_found", errs)
	}
	for k := range errs {
		if strings.HasSuffix(k, " other") || strings.HasSuffix(k, " unavailable") {
			t.Errorf("store faults in a clean run: %v", errs)
		}
	}
}
