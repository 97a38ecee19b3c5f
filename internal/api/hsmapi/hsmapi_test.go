package hsmapi

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/hsm"
	"github.com/keyhold/keyhold/internal/store/sqlite"
)

func TestMain(m *testing.M) {
	if os.Getenv("KEYHOLD_HSM_DAEMON") == "1" {
		args := os.Args[1:]
		if len(args) > 0 && args[0] == "hsm-daemon" {
			args = args[1:]
		}
		if err := hsm.DaemonCommand(context.Background(), args, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func call(t *testing.T, svc *awsjson.Service, op, body string) (map[string]any, *awsjson.Error) {
	t.Helper()
	o, ok := svc.Lookup(op)
	if !ok {
		t.Fatalf("no operation %s", op)
	}
	res, err := o.Handle(context.Background(), &awsjson.Call{Operation: op, Body: []byte(body)})
	if err != nil {
		we, _ := svc.WireError(err)
		return nil, we
	}
	b, _ := json.Marshal(res)
	var out map[string]any
	json.Unmarshal(b, &out)
	return out, nil
}

func TestOperations(t *testing.T) {
	if _, err := os.Stat("/usr/lib/softhsm/libsofthsm2.so"); err != nil {
		t.Skip("SoftHSM2 not installed (apt-get install softhsm2); skipping")
	}
	dir := t.TempDir()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "keyhold.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m, err := hsm.Open(context.Background(), hsm.Config{Dir: filepath.Join(dir, "hsm"), Records: db, TransitionDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	svc := New(m, "us-east-1", "111122223333")
	if svc.TargetPrefix != "BaldrApiService" || svc.SigningName != "cloudhsm" {
		t.Fatal("wrong service names")
	}
	sn := hsm.Subnets("us-east-1")

	for _, tc := range []struct{ name, op, body, want string }{
		{"missing HsmType", "CreateCluster", `{"SubnetIds":["` + sn[0].ID + `"]}`, "CloudHsmInvalidRequestException"},
		{"bad subnet pattern", "CreateCluster", `{"HsmType":"hsm1.medium","SubnetIds":["nope"]}`, "CloudHsmInvalidRequestException"},
		{"unknown subnet", "CreateCluster", `{"HsmType":"hsm1.medium","SubnetIds":["subnet-0123456789abcdef0"]}`, "CloudHsmInvalidRequestException"},
		{"unknown member", "CreateCluster", `{"HsmType":"hsm1.medium","SubnetIds":["` + sn[0].ID + `"],"Foo":1}`, "SerializationException"},
		{"unknown filter", "DescribeClusters", `{"Filters":{"colour":["red"]}}`, "CloudHsmInvalidRequestException"},
		{"MaxResults range", "DescribeClusters", `{"MaxResults":26}`, "CloudHsmInvalidRequestException"},
		{"unknown cluster", "DeleteCluster", `{"ClusterId":"cluster-aaaaaaaaaaa"}`, "CloudHsmResourceNotFoundException"},
		{"unknown backup", "DeleteBackup", `{"BackupId":"backup-aaaaaaaaaaa"}`, "CloudHsmResourceNotFoundException"},
		{"DeleteHsm without target", "DeleteHsm", `{"ClusterId":"cluster-aaaaaaaaaaa"}`, "CloudHsmInvalidRequestException"},
		{"reserved tag", "TagResource", `{"ResourceId":"cluster-aaaaaaaaaaa","TagList":[{"Key":"aws:x","Value":"v"}]}`, "CloudHsmTagException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, we := call(t, svc, tc.op, tc.body)
			if we == nil || we.Type != tc.want || we.Status != 400 {
				t.Fatalf("got %+v, want %s", we, tc.want)
			}
		})
	}

	out, we := call(t, svc, "CreateCluster", `{"HsmType":"hsm2m.medium","SubnetIds":["`+sn[0].ID+`","`+sn[1].ID+`"],"TagList":[{"Key":"team","Value":"kms"}]}`)
	if we != nil {
		t.Fatal(we)
	}
	cl := out["Cluster"].(map[string]any)
	id := cl["ClusterId"].(string)
	if cl["State"] != "CREATE_IN_PROGRESS" || !hsm.ValidClusterID(id) || cl["VpcId"] != hsm.VpcID("us-east-1") {
		t.Fatalf("CreateCluster: %v", cl)
	}
	if _, ok := cl["CreateTimestamp"].(float64); !ok {
		t.Fatalf("CreateTimestamp is not epoch seconds: %v", cl["CreateTimestamp"])
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, we = call(t, svc, "DescribeClusters", `{"Filters":{"clusterIds":["`+id+`"]}}`)
		if we != nil {
			t.Fatal(we)
		}
		cs := out["Clusters"].([]any)
		if len(cs) == 1 && cs[0].(map[string]any)["State"] == "UNINITIALIZED" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster never became UNINITIALIZED: %v", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, we := call(t, svc, "TagResource", `{"ResourceId":"`+id+`","TagList":[{"Key":"env","Value":"test"}]}`); we != nil {
		t.Fatal(we)
	}
	if _, we := call(t, svc, "UntagResource", `{"ResourceId":"`+id+`","TagKeyList":["team"]}`); we != nil {
		t.Fatal(we)
	}
	out, we = call(t, svc, "ListTags", `{"ResourceId":"`+id+`"}`)
	if we != nil {
		t.Fatal(we)
	}
	if b, _ := json.Marshal(out["TagList"]); string(b) != `[{"Key":"env","Value":"test"}]` {
		t.Fatalf("tags: %s", b)
	}
	_, we = call(t, svc, "InitializeCluster", `{"ClusterId":"`+id+`","SignedCert":"x","TrustAnchor":"y"}`)
	if we == nil || we.Type != "CloudHsmInvalidRequestException" || !strings.Contains(we.Message, "CSR") {
		t.Fatalf("initialize without HSM: %+v", we)
	}
	out, we = call(t, svc, "DeleteCluster", `{"ClusterId":"`+id+`"}`)
	if we != nil || out["Cluster"].(map[string]any)["State"] != "DELETE_IN_PROGRESS" {
		t.Fatalf("DeleteCluster: %v %v", out, we)
	}
	out, we = call(t, svc, "DescribeBackups", `{"Filters":{"neverExpires":["false"]},"SortAscending":true}`)
	if we != nil || len(out["Backups"].([]any)) != 0 {
		t.Fatalf("DescribeBackups: %v %v", out, we)
	}
}
