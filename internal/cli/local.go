package cli

import (
	"context"
	"net"
	"net/http"
	"path/filepath"

	"github.com/keyhold/keyhold/internal/credfile"
)

// Local is an Instance serving on a loopback port of its own: what the
// in-process tests (internal/integration) and keyholdtest run.
type Local struct {
	*Instance
	// Endpoint is http://127.0.0.1:PORT.
	Endpoint string
	srv      *http.Server
}

// StartLocal opens an instance for cfg and serves it on 127.0.0.1 at a
// port the system picks. It never listens anywhere else.
func StartLocal(ctx context.Context, cfg ServeConfig) (*Local, error) {
	in, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		in.Close()
		return nil, err
	}
	l := &Local{Instance: in, Endpoint: "http://" + ln.Addr().String(), srv: &http.Server{Handler: in.Handler}}
	go l.srv.Serve(ln)
	return l, nil
}

// Close stops serving, then releases the instance.
func (l *Local) Close() {
	l.srv.Close()
	l.Instance.Close()
}

// AdminCredential is the account admin's key pair, from the credentials
// file the data directory's first start wrote (DATADIR/credentials).
func (l *Local) AdminCredential() (credfile.Pair, error) {
	return credfile.Read(filepath.Join(l.Config.DataDir, "credentials"), "default")
}
