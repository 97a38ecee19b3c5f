package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"testing"
	"time"
)

// TestAgainstMoto runs the bench against a real third-party KMS emulator
// (moto), which checks that the requests are ones another implementation
// accepts. It starts moto on 127.0.0.1 and stops it at the end.
func TestAgainstMoto(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the moto run")
	}
	py, err := exec.LookPath("python3")
	if err != nil || exec.Command(py, "-c", "import moto.server").Run() != nil {
		t.Skip("moto not installed; pip install 'moto[server]' to bench against moto")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, py, "-m", "moto.server", "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	ep := fmt.Sprintf("http://127.0.0.1:%d", port)
	ready := false
	for i := 0; i < 120 && !ready; i++ {
		if resp, err := http.Get(ep + "/moto-api/"); err == nil {
			resp.Body.Close()
			ready = resp.StatusCode == 200
		}
		if !ready {
			time.Sleep(250 * time.Millisecond)
		}
	}
	if !ready {
		t.Fatal("moto did not start")
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	for _, op := range []string{"encrypt", "decrypt"} {
		t.Run(op, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := Command(context.Background(), []string{"--endpoint", ep, "--op", op, "--concurrency", "4", "--duration", "500ms", "--json"}, &out, &errOut); err != nil {
				t.Fatalf("%v (%s)", err, errOut.String())
			}
			var rep Report
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Requests == 0 || rep.Errors != 0 || rep.KeyID == "" {
				t.Fatalf("report %+v, stderr %q", rep, errOut.String())
			}
		})
	}
}
