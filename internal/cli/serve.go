package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/keyhold/keyhold/internal/api/iamapi"
	"github.com/keyhold/keyhold/internal/api/kmsapi"
	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/awsquery"
	"github.com/keyhold/keyhold/internal/datadir"
	"github.com/keyhold/keyhold/internal/hsm"
	"github.com/keyhold/keyhold/internal/identity"
	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/keystore/hsmstore"
	"github.com/keyhold/keyhold/internal/keystore/soft"
	"github.com/keyhold/keyhold/internal/keystore/xksstore"
	"github.com/keyhold/keyhold/internal/kms"
	"github.com/keyhold/keyhold/internal/netlimit"
	"github.com/keyhold/keyhold/internal/policy"
	"github.com/keyhold/keyhold/internal/server"
	"github.com/keyhold/keyhold/internal/store"
)

// DefaultAddr is where `keyhold serve` listens without --addr.
const DefaultAddr = "127.0.0.1:4599"

// jsonContentType is the AWS JSON 1.1 media type of refusals.
const jsonContentType = "application/x-amz-json-1.1"

// DefaultDataDir is the data directory without --data-dir or KEYHOLD_DATA_DIR.
const DefaultDataDir = "keyhold-data"

// ServeConfig is everything `keyhold serve` needs.
type ServeConfig struct {
	DataDir          string
	Addr             string
	Region           string
	DeletionInterval time.Duration
	Logger           *slog.Logger
	// AuditStdout also receives every audit event (--audit-stdout).
	AuditStdout io.Writer
	// AuditFailOpen answers requests even when their audit event cannot be
	// written (--audit-fail-open); by default they fail with the service's
	// internal error.
	AuditFailOpen bool
	// SessionNow is the clock temporary credentials expire by (tests).
	SessionNow func() time.Time
	// XKSCAFile is a PEM bundle of CAs trusted for XKS proxies' TLS
	// certificates, in addition to the system pool.
	XKSCAFile string
	// Caches bounds the domain's in-memory caches (--cache-size).
	Caches kms.CacheSizes
	// DatabaseURL selects PostgreSQL (postgres://...), shared by replicas;
	// "" keeps the embedded SQLite database in DataDir.
	DatabaseURL string
	// DatabaseRetry is how often an unreachable database is retried at
	// start (0: fail at once).
	DatabaseRetry time.Duration
	// RootKeyFile is the root key's path; "" means DataDir/root.key.
	// Replicas on PostgreSQL must all open the same key.
	RootKeyFile string
	// Limits bound client connections: caps, timeouts, header size
	// (zero fields take netlimit.Defaults).
	Limits netlimit.Limits
	// Extra adds operation tables (the CloudHSM control plane) once the
	// domain is built; it may give the CloudHSM driver its clusters.
	Extra func(ctx context.Context, env Extras) ([]*awsjson.Service, func(), error)
}

// Extras is what an Extra may wire into: the domain, the store, the first
// account and the key store drivers that need a control plane.
type Extras struct {
	Service   *kms.Service
	Store     store.Store
	AccountID string
	CloudHSM  *hsmstore.Driver
}

// Instance is a running keyhold: its store, domain and HTTP handler.
type Instance struct {
	Config   ServeConfig
	Store    store.Store
	Database *Database
	// CloudHSM is the CloudHSM key store driver the domain uses.
	CloudHSM  *hsmstore.Driver
	Service   *kms.Service
	Handler   http.Handler
	AccountID string
	closers   []func()
}

// Close releases the instance's resources (not the listener).
func (in *Instance) Close() {
	for i := len(in.closers) - 1; i >= 0; i-- {
		in.closers[i]()
	}
}

// Open builds an Instance on a data directory: root key, database,
// first-start identity, domain, operation tables.
func Open(ctx context.Context, cfg ServeConfig) (*Instance, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	dataDir, err := datadir.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.DataDir = dataDir
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	// One server per data directory: a second one would run its own HSM
	// daemons and keep its own connection states over the same database.
	unlock, err := datadir.Lock(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	in := &Instance{Config: cfg, closers: []func(){unlock}}
	if cfg.RootKeyFile == "" {
		cfg.RootKeyFile = filepath.Join(cfg.DataDir, "root.key")
	}
	root, err := loadRootKey(cfg.RootKeyFile, cfg.DatabaseURL != "")
	if err != nil {
		in.Close()
		return nil, err
	}
	database, err := OpenDatabase(ctx, cfg.DatabaseURL, cfg.DataDir, cfg.DatabaseRetry, cfg.Logger)
	if err != nil {
		in.Close()
		return nil, err
	}
	var db store.Store = database
	in.closers = append(in.closers, func() { db.Close() })
	in.Store, in.Database = db, database
	dir := identity.New(db, root)
	// Replicas starting together on an empty database: the first
	// bootstraps the account, the others wait for its transaction and find
	// it.
	var account string
	err = db.Tx(ctx, func(tx store.Store) error {
		var err error
		account, err = identity.New(tx, root).Bootstrap(ctx, filepath.Join(cfg.DataDir, "credentials"), cfg.Region, time.Now().UTC())
		return err
	})
	if err == nil {
		err = checkRootKey(ctx, dir, account)
	}
	if err != nil {
		in.Close()
		return nil, err
	}
	in.AccountID = account
	var rootCAs *x509.CertPool
	if cfg.XKSCAFile != "" {
		pem, err := os.ReadFile(cfg.XKSCAFile)
		if err != nil {
			in.Close()
			return nil, fmt.Errorf("--xks-ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			in.Close()
			return nil, fmt.Errorf("--xks-ca-file %s holds no PEM certificate", cfg.XKSCAFile)
		}
		rootCAs = pool
	}
	// The key store drivers: the composition root picks them; the domain
	// only knows internal/keystore's interfaces.
	defaultStore := soft.New(root)
	cloudHSM := hsmstore.New(cfg.Logger)
	in.CloudHSM = cloudHSM
	external := xksstore.New(xksstore.Config{Region: cfg.Region, Inner: defaultStore, Services: db, RootCAs: rootCAs, Logger: cfg.Logger})
	svc, err := kms.New(kms.Config{Region: cfg.Region, Store: db, Root: root, Logger: cfg.Logger, Caches: cfg.Caches,
		Default: defaultStore, Drivers: []keystore.Driver{cloudHSM, external},
		IdentityPolicies: identityPolicies(dir), PrincipalTags: principalTags(dir)})
	if err != nil {
		in.Close()
		return nil, err
	}
	in.Service = svc
	kmsTable, err := kmsapi.New(svc)
	if err != nil {
		in.Close()
		return nil, err
	}
	services := []*awsjson.Service{kmsTable}
	if cfg.Extra != nil {
		more, closeExtra, err := cfg.Extra(ctx, Extras{Service: svc, Store: db, AccountID: account, CloudHSM: cloudHSM})
		if err != nil {
			in.Close()
			return nil, err
		}
		if closeExtra != nil {
			in.closers = append(in.closers, closeExtra)
		}
		services = append(services, more...)
	}
	in.closers = append(in.closers, svc.Close)
	if err := svc.Start(ctx); err != nil {
		in.Close()
		return nil, err
	}
	if err := in.followReplicas(dir); err != nil {
		in.Close()
		return nil, err
	}
	admin := identity.NewAdmin(dir, func(doc string, identityPolicy bool) error {
		if !identityPolicy {
			_, err := kms.ParseTrustPolicy(doc)
			return err
		}
		_, err := policy.Parse(doc, policy.IdentityPolicy)
		return err
	})
	superAdmin := identity.UserARN(account, identity.AdminUserName)
	iamTable, stsTable := iamapi.New(admin, func(c awsjson.Caller) bool { return c.ARN == superAdmin }, svc.AssumeRoleAllowed)
	auditHook, closeAudit, err := AuditHook(cfg.DataDir, cfg.Region, account, cfg.AuditStdout, cfg.Logger)
	if err != nil {
		in.Close()
		return nil, err
	}
	in.closers = append(in.closers, func() { closeAudit() })
	if cfg.AuditFailOpen {
		auditHook = FailOpenAudit(auditHook, cfg.Logger)
	}
	api := server.New(server.Config{Region: cfg.Region, Directory: dir, Services: services, Audit: auditHook,
		QueryServices: []*awsquery.Service{iamTable, stsTable}, Authorize: serverAuthorizer(svc), Logger: cfg.Logger, SessionNow: cfg.SessionNow,
		Ready: func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return database.Ping(ctx) == nil
		}})
	in.Handler, err = mountConsole(api, cfg)
	if err != nil {
		in.Close()
		return nil, err
	}
	return in, nil
}

// Serve runs `keyhold serve`.
func Serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := os.Getenv("KEYHOLD_DATA_DIR")
	if def == "" {
		def = DefaultDataDir
	}
	dataDir := fs.String("data-dir", def, "data directory (database, root key, credentials, HSM clusters)")
	addr := fs.String("addr", DefaultAddr, "listen address")
	region := fs.String("region", "us-east-1", "the region this endpoint serves")
	xksCA := fs.String("xks-ca-file", os.Getenv("KEYHOLD_XKS_CA_FILE"), "PEM bundle of CAs trusted for XKS proxy certificates (in addition to the system pool)")
	auditStdout := fs.Bool("audit-stdout", false, "also write each audit event (one JSON line) to stdout")
	auditFailOpen := fs.Bool("audit-fail-open", false, "answer requests even when their audit event cannot be written (default: they fail with KMSInternalException)")
	tlsCert := fs.String("tls-cert", "", "serve HTTPS with this PEM certificate (chain) file")
	tlsKey := fs.String("tls-key", "", "the PEM private key of --tls-cert")
	dbURL := fs.String("database-url", os.Getenv(DatabaseURLEnv), "PostgreSQL database shared by replicas (postgres://user:password@host:port/db); default: SQLite in the data directory (env "+DatabaseURLEnv+")")
	rootKey := fs.String("root-key", os.Getenv("KEYHOLD_ROOT_KEY"), "root key file (32 bytes, 0600); replicas on one database share it; default DATA_DIR/root.key (env KEYHOLD_ROOT_KEY)")
	delInterval := fs.Duration("deletion-interval", time.Minute, "how often keys whose deletion date passed are deleted")
	var limits netlimit.Limits
	limits.RegisterFlags(fs, "")
	cacheSize := fs.Int("cache-size", kms.DefaultCacheSize, "entries in each in-memory cache (keys, aliases, grant lists, parsed policies); least recently used first out")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	// Every path derived from the data directory (HSM token directories
	// in the store, daemons' configs) is absolute, so owner commands run
	// from another working directory find the same files.
	abs, err := datadir.Abs(*dataDir)
	if err != nil {
		return err
	}
	*dataDir = abs
	if *rootKey != "" {
		if *rootKey, err = filepath.Abs(*rootKey); err != nil {
			return err
		}
	}
	cfg := ServeConfig{DataDir: *dataDir, Addr: *addr, Region: *region, DeletionInterval: *delInterval, Logger: log, XKSCAFile: *xksCA,
		DatabaseURL: *dbURL, DatabaseRetry: 2 * time.Second, RootKeyFile: *rootKey, Limits: limits,
		Caches: kms.CacheSizes{Keys: *cacheSize, Aliases: *cacheSize, Grants: *cacheSize, Policies: *cacheSize},
		Extra:  CloudHSMExtra(hsm.Config{Dir: filepath.Join(*dataDir, "hsm"), Region: *region, Logger: log})}
	if *auditStdout {
		cfg.AuditStdout = stdout
	}
	cfg.AuditFailOpen = *auditFailOpen
	if (*tlsCert == "") != (*tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	in, err := Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer in.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	bg, stopBG := context.WithCancel(ctx)
	defer stopBG()
	go in.RunBackground(bg, *delInterval)
	srv := cfg.Limits.Server(in.Handler)
	scheme := "http"
	var tc *tls.Config
	if *tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tc = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
		scheme = "https"
	}
	ln = cfg.Limits.Listen(ln, tc, netlimit.HTTPReject(jsonContentType, "ThrottlingException"))
	log.Info("keyhold serving", "endpoint", scheme+"://"+ln.Addr().String(), "region", *region, "account", in.AccountID,
		"data_dir", abs, "credentials", filepath.Join(abs, "credentials"), "root_key", "file "+in.Config.RootKeyFile, "database", in.databaseName())
	errc := make(chan error, 1)
	go func() {
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	case <-ctx.Done():
		log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			return err
		}
	}
	return nil
}
