package hsm

import (
	"context"
	"testing"
	"time"
)

// BenchmarkUserSessionEncrypt measures 32-byte encrypts through the daemons
// (RPC + PKCS#11), parallel, over two HSMs; it also reports the raw PKCS#11
// rate of the same token measured inside one daemon (pkcs11-bench).
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
	pt := make([]byte, 32)
	b.SetParallelism(4)
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
	o := &owner{reg: e.m.reg, module: defaultModule, id: id, log: e.m.log}
	n, el, err := o.bench(ctx, userPass, time.Second, 2)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/el.Seconds(), "raw-pkcs11-encrypts/s")
}
