package hsm

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkUserSessionEncrypt measures 32-byte encrypts through the daemons
// (RPC + PKCS#11), 16 callers, over two HSMs, and the CPU they cost: the
// caller's (this process) and the daemons', in µs per encrypt (less
// sensitive to other load on the machine than the rate). It also reports
// the raw PKCS#11 rate of the same token measured inside one daemon
// (pkcs11-bench).
//
//	go test -run '^$' -bench UserSessionEncrypt ./internal/hsm/
func BenchmarkUserSessionEncrypt(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	id := e.activeCluster("us-east-1a", "us-east-1b")
	s, err := e.m.Login(ctx, id, "kmsuser", userPass)
	if err != nil {
		b.Fatal(err)
	}
	label := "arn:aws:kms:us-east-1:111122223333:key/bench"
	if _, err := s.GenerateKey(ctx, label); err != nil {
		b.Fatal(err)
	}
	e.m.mu.Lock()
	pids := []int{os.Getpid()}
	for _, p := range e.m.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	e.m.mu.Unlock()
	pt := make([]byte, 32)
	b.SetParallelism(8)
	c0, d0 := cpuTicks(pids[:1]), cpuTicks(pids[1:])
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := s.Encrypt(ctx, label, pt, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "encrypts/s")
	b.StopTimer()
	// Clock ticks are 10 ms: meaningful over a second or more (-benchtime).
	b.ReportMetric(float64(cpuTicks(pids[:1])-c0)*1e4/float64(b.N), "caller-cpu-µs/op")
	b.ReportMetric(float64(cpuTicks(pids[1:])-d0)*1e4/float64(b.N), "daemon-cpu-µs/op")
	o := &owner{reg: e.m.reg, module: defaultModule, id: id, log: e.m.log}
	r, err := o.bench(ctx, userPass, time.Second, 2)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(r.ops)/r.elapsed.Seconds(), "raw-pkcs11-encrypts/s")
	b.ReportMetric(r.cpuPerOp(), "raw-pkcs11-cpu-µs/op")
}

// cpuTicks is the user+system CPU time of the processes, in clock ticks
// (assumed 100 a second, Linux's USER_HZ).
func cpuTicks(pids []int) int64 {
	var t int64
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		k, _ := strconv.ParseInt(f[12], 10, 64)
		t += u + k
	}
	return t
}
