package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyhold/keyhold/internal/api/cloudtrailapi"
	"github.com/keyhold/keyhold/internal/api/iamapi"
	"github.com/keyhold/keyhold/internal/api/kmsapi"
	"github.com/keyhold/keyhold/internal/audit"
	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/awsquery"
	"github.com/keyhold/keyhold/internal/config"
	"github.com/keyhold/keyhold/internal/datadir"
	"github.com/keyhold/keyhold/internal/hsm"
	"github.com/keyhold/keyhold/internal/identity"
	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/keystore/hsmstore"
	"github.com/keyhold/keyhold/internal/keystore/soft"
	"github.com/keyhold/keyhold/internal/keystore/xksstore"
	"github.com/keyhold/keyhold/internal/kms"
	"github.com/keyhold/keyhold/internal/logs"
	"github.com/keyhold/keyhold/internal/metrics"
	"github.com/keyhold/keyhold/internal/netlimit"
	"github.com/keyhold/keyhold/internal/policy"
	"github.com/keyhold/keyhold/internal/rootkey"
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
	// AccountID is the account the first start creates (12 digits); ""
	// picks a random one. A data directory that already has another
	// account is refused.
	AccountID string
	// SeedFile, when set, is applied at every start (idempotently).
	SeedFile string
	// Metrics receives request, audit and store figures; nil makes a
	// registry of its own (Instance.Metrics).
	Metrics *metrics.Metrics
	// AuditStdout also receives every audit event (--audit-stdout).
	AuditStdout io.Writer
	// AuditFailOpen answers requests even when their audit event cannot be
	// written (--audit-fail-open); by default they fail with the service's
	// internal error.
	AuditFailOpen bool
	// AuditSyncInterval is the least time between two fsyncs of the audit
	// trail (--audit-sync-interval; 0: back to back; the flag's default is
	// 100ms).
	AuditSyncInterval time.Duration
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
	// SessionNow is the clock temporary credentials expire by (tests).
	SessionNow func() time.Time
	// XKSCAFile is a PEM bundle of CAs trusted for XKS proxies' TLS
	// certificates, in addition to the system pool.
	XKSCAFile string
	// XKSCallTimeout bounds each attempt of an XKS proxy call; 0 is AWS
	// KMS's 250 ms (tests on a busy machine raise it).
	XKSCallTimeout time.Duration
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
	// Root is the root key every replica shares (it seals the HSM
	// network CAs).
	Root *rootkey.Key
	// Lead registers a job that runs on the leader only (until ctx ends).
	Lead func(ctx context.Context, job func(context.Context))
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
	Metrics   *metrics.Metrics
	Audit     *AuditTrail
	closers   []func()
	// leader runs the jobs one process of a shared database runs.
	leader leaderJobs
}

// Close releases the instance's resources (not the listener).
func (in *Instance) Close() {
	for i := len(in.closers) - 1; i >= 0; i-- {
		in.closers[i]()
	}
	in.closers = nil
}

var accountIDPattern = regexp.MustCompile(`^[0-9]{12}$`)

// Open builds an Instance on a data directory: root key, database,
// first-start identity, domain, operation tables.
func Open(ctx context.Context, cfg ServeConfig) (*Instance, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.AccountID != "" && !accountIDPattern.MatchString(cfg.AccountID) {
		return nil, fmt.Errorf("account id %q: want 12 digits", cfg.AccountID)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
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
	if cfg.RootKeyFile == "" {
		cfg.RootKeyFile = filepath.Join(cfg.DataDir, "root.key")
	}
	in := &Instance{Config: cfg, Metrics: cfg.Metrics, closers: []func(){unlock}}
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
	// Every store call is timed for keyhold_store_call_duration_seconds
	// (below the domain's caches: what reaches the database).
	db := store.Observe(database, func(method string, d time.Duration, err error) {
		cfg.Metrics.ObserveStore(method, d, store.ErrorClass(err))
	})
	in.closers = append(in.closers, func() { db.Close() })
	in.Store, in.Database = db, database
	dir := identity.New(db, root)
	// Replicas starting together on an empty database: the first
	// bootstraps the account, the others wait for its transaction and find
	// it.
	var account string
	err = db.Tx(ctx, func(tx store.Store) error {
		var err error
		account, err = identity.New(tx, root).BootstrapAccount(ctx, filepath.Join(cfg.DataDir, "credentials"), cfg.Region, cfg.AccountID, time.Now().UTC())
		return err
	})
	if err == nil {
		err = checkRootKey(ctx, dir, account)
	}
	if err != nil {
		in.Close()
		return nil, err
	}
	if cfg.AccountID != "" && account != cfg.AccountID {
		in.Close()
		return nil, fmt.Errorf("--account-id %s: the data directory %s already belongs to account %s", cfg.AccountID, cfg.DataDir, account)
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
	external := xksstore.New(xksstore.Config{Region: cfg.Region, Inner: defaultStore, Services: db, RootCAs: rootCAs, Logger: cfg.Logger,
		CallTimeout: cfg.XKSCallTimeout})
	svc, err := kms.New(kms.Config{Region: cfg.Region, Store: db, Root: root, Logger: cfg.Logger, Caches: cfg.Caches,
		Default: defaultStore, Drivers: []keystore.Driver{timeDriver(cloudHSM, cfg.Metrics, "hsm"), timeDriver(external, cfg.Metrics, "xks")},
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
		more, closeExtra, err := cfg.Extra(ctx, Extras{Service: svc, Store: db, AccountID: account, CloudHSM: cloudHSM, Root: root, Lead: in.leader.add})
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
	if database.PG != nil {
		svc.SetReplicated()
	}
	if err := svc.Start(ctx); err != nil {
		in.Close()
		return nil, err
	}
	if err := in.followReplicas(dir); err != nil {
		in.Close()
		return nil, err
	}
	in.startLeading()
	cfg.Metrics.SetCustomKeyStores(customKeyStoreStates(db))
	if cfg.SeedFile != "" {
		if err := ApplySeedFile(ctx, svc, account, cfg.SeedFile, cfg.Logger); err != nil {
			in.Close()
			return nil, err
		}
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
	trail, err := OpenAuditTrail(cfg.DataDir, cfg.Region, account, cfg.AuditStdout, cfg.Logger, cfg.Metrics, cfg.AuditSyncInterval)
	if err != nil {
		in.Close()
		return nil, err
	}
	in.Audit = trail
	in.closers = append(in.closers, func() { trail.Close() })
	services = append(services, cloudtrailapi.New(trail.Path))
	auditHook := trail.Hook
	if cfg.AuditFailOpen {
		auditHook = FailOpenAudit(auditHook, cfg.Logger)
	}
	api := server.New(server.Config{Region: cfg.Region, Directory: dir, Services: services, Audit: observer(cfg.Logger, cfg.Metrics, auditHook),
		QueryServices: []*awsquery.Service{iamTable, stsTable}, Authorize: serverAuthorizer(svc), Logger: cfg.Logger, SessionNow: cfg.SessionNow,
		Ready: func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return database.Ping(ctx) == nil
		}})
	handler, err := mountConsole(api, cfg)
	if err != nil {
		in.Close()
		return nil, err
	}
	in.Handler = withMetrics(cfg.Metrics, handler)
	return in, nil
}

// serveOptions are `keyhold serve`'s settings.
type serveOptions struct {
	configFile       string
	dataDir          string
	inMemory         bool
	addr             string
	region           string
	accountID        string
	seed             string
	tlsCert, tlsKey  string
	xksCA            string
	xksTimeout       time.Duration
	hsmListenIP      string
	databaseURL      string
	rootKey          string
	cacheSize        int
	auditStdout      bool
	auditFailOpen    bool
	auditSync        time.Duration
	limits           netlimit.Limits
	deletionInterval time.Duration
	shutdownTimeout  time.Duration
	logLevel         string
	logFormat        string
	pprofAddr        string
}

// checkLoopbackAddr accepts "" or a HOST:PORT on a loopback address.
func checkLoopbackAddr(v string) error {
	if v == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT", v)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q is not a loopback address (the profiler must not be reachable from the network)", v)
	}
	return nil
}

// checkAuditSync bounds --audit-sync-interval to [0, 1s].
func checkAuditSync(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return err
	}
	if d < 0 || d > time.Second {
		return errors.New("want a duration from 0s to 1s")
	}
	return nil
}

func checkLevel(v string) error { _, err := logs.ParseLevel(v); return err }

func checkIP(v string) error {
	if v == "" {
		return nil
	}
	if _, err := netip.ParseAddr(v); err != nil {
		return fmt.Errorf("%q is not an IP address", v)
	}
	return nil
}

func checkAccount(v string) error {
	if v != "" && !accountIDPattern.MatchString(v) {
		return errors.New("want 12 digits")
	}
	return nil
}

func checkAddr(v string) error {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT", v)
	}
	// Checked here rather than at listen time, so the error names where
	// the value came from.
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q is not HOST:PORT (the port must be a number from 0 to 65535)", v)
	}
	return nil
}

// logSettings are the logging settings every long-running command has.
func logSettings(level, format *string) []*config.Setting {
	return []*config.Setting{
		{Name: "log-level", Usage: "log level: debug, info, warn or error", Default: "info", Target: level, Check: checkLevel},
		{Name: "log-format", Usage: "log format: text or json", Default: "text", Target: format, Check: logs.CheckFormat},
	}
}

func serveSettings(o *serveOptions) *config.Set {
	s := &config.Set{Command: "serve", Settings: []*config.Setting{
		{Name: "config", Usage: "configuration file (see keyhold config example)", Target: &o.configFile, FlagOnly: true},
		{Name: "data-dir", Usage: "data directory: database, root key, credentials, audit trail, HSM clusters", Default: DefaultDataDir, Target: &o.dataDir},
		{Name: "in-memory", Usage: "keep all state in a RAM-backed temporary directory, removed at exit (nothing written to disk)", Default: "false", Kind: config.Bool, Target: &o.inMemory},
		{Name: "addr", Usage: "listen address", Default: DefaultAddr, Target: &o.addr, Check: checkAddr},
		{Name: "region", Usage: "the region this endpoint serves", Default: "us-east-1", Target: &o.region},
		{Name: "account-id", Usage: "account id of the first account (12 digits; only at first start, random by default)", Target: &o.accountID, Check: checkAccount},
		{Name: "seed", Usage: "seed file of keys, aliases, policies and tags applied at every start (JSON, see README)", Target: &o.seed, Example: "/etc/keyhold/seed.json"},
		{Name: "tls-cert", Usage: "serve HTTPS with this PEM certificate (chain) file (reloaded on SIGHUP)", Target: &o.tlsCert, Example: "/etc/keyhold/tls.pem"},
		{Name: "tls-key", Usage: "the PEM private key of tls-cert", Target: &o.tlsKey, Example: "/etc/keyhold/tls-key.pem"},
		{Name: "database-url", Usage: "PostgreSQL database shared by replicas (postgres://user:password@host:port/db); default: SQLite in the data directory", Target: &o.databaseURL},
		{Name: "root-key", Usage: "root key file (32 bytes, 0600); replicas on one database share it; default DATA_DIR/root.key", Target: &o.rootKey, Example: "/etc/keyhold/root.key"},
		{Name: "cache-size", Usage: "entries in each in-memory cache (keys, aliases, grant lists, parsed policies); least recently used first out", Default: strconv.Itoa(kms.DefaultCacheSize), Kind: config.Int, Target: &o.cacheSize},
		{Name: "xks-ca-file", Usage: "PEM bundle of CAs trusted for XKS proxy certificates, in addition to the system pool", Target: &o.xksCA, Example: "/etc/keyhold/xks-ca.pem"},
		{Name: "xks-timeout", Usage: "how long each attempt of an XKS proxy call may take (AWS KMS: 250ms; raise it only for a proxy that is slow to answer)", Default: "250ms", Kind: config.Duration, Target: &o.xksTimeout},
		{Name: "hsm-listen-ip", Usage: "address this replica's HSMs listen on (mutual TLS), reachable by the replicas of other hosts; default: each HSM at its ENI IP on the loopback network", Target: &o.hsmListenIP, Check: checkIP, Example: "10.0.1.5"},
		{Name: "audit-stdout", Usage: "also write each audit event (one JSON line) to stdout", Default: "false", Kind: config.Bool, Target: &o.auditStdout},
		{Name: "audit-fail-open", Usage: "answer requests even when their audit event cannot be written (default: they fail with an internal error)", Default: "false", Kind: config.Bool, Target: &o.auditFailOpen},
		{Name: "audit-sync-interval", Usage: "least time between two fsyncs of the audit trail, at most 1s: the window of events a power loss can take is this interval plus one fsync (a crash of keyhold alone never loses an answered request's event); 0 fsyncs again as soon as the last one returned, which costs CPU per request (about a third more on one core)", Default: "100ms", Kind: config.Duration, Target: &o.auditSync, Check: checkAuditSync},
		{Name: "deletion-interval", Usage: "how often keys whose deletion date passed are deleted", Default: "1m", Kind: config.Duration, Target: &o.deletionInterval},
		{Name: "shutdown-timeout", Usage: "on SIGTERM, how long in-flight requests may take to finish", Default: "30s", Kind: config.Duration, Target: &o.shutdownTimeout},
		{Name: "pprof-addr", Usage: "serve Go's profiler (/debug/pprof/, for go tool pprof) on this loopback HOST:PORT; off by default", Target: &o.pprofAddr, Check: checkLoopbackAddr, Example: "127.0.0.1:6060"},
	}}
	s.Settings = append(s.Settings, limitSettings(&o.limits)...)
	s.Settings = append(s.Settings, logSettings(&o.logLevel, &o.logFormat)...)
	return s
}

// limitSettings are the connection bounds of a serving command
// (netlimit.Limits; -1 turns a bound off).
func limitSettings(l *netlimit.Limits) []*config.Setting {
	d := netlimit.Defaults()
	return []*config.Setting{
		{Name: "max-conns", Usage: "most concurrent client connections (-1: no cap)", Default: strconv.Itoa(d.MaxConns), Kind: config.Int, Target: &l.MaxConns},
		{Name: "max-conns-per-client", Usage: "most concurrent connections from one IP address (-1: no cap)", Default: strconv.Itoa(d.MaxConnsPerClient), Kind: config.Int, Target: &l.MaxConnsPerClient},
		{Name: "read-header-timeout", Usage: "time allowed for a request's headers to arrive", Default: d.ReadHeaderTimeout.String(), Kind: config.Duration, Target: &l.ReadHeaderTimeout},
		{Name: "read-timeout", Usage: "time allowed for a whole request, body included, to arrive", Default: d.ReadTimeout.String(), Kind: config.Duration, Target: &l.ReadTimeout},
		{Name: "write-timeout", Usage: "time allowed from a request's headers to the end of its answer", Default: d.WriteTimeout.String(), Kind: config.Duration, Target: &l.WriteTimeout},
		{Name: "idle-timeout", Usage: "how long an idle keep-alive connection stays open", Default: d.IdleTimeout.String(), Kind: config.Duration, Target: &l.IdleTimeout},
		{Name: "max-header-bytes", Usage: "largest request header block, in bytes", Default: strconv.Itoa(d.MaxHeaderBytes), Kind: config.Int, Target: &l.MaxHeaderBytes},
	}
}

func serveCommand(stdout, stderr io.Writer) *cobra.Command {
	o := &serveOptions{}
	set := serveSettings(o)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the API endpoint (KMS, CloudHSM, IAM/STS, CloudTrail LookupEvents, /metrics)",
		Long: `Run the API endpoint: KMS (TrentService), the CloudHSM control plane,
IAM/STS, CloudTrail LookupEvents over the audit trail, /healthz and /metrics.

Every setting is a flag, a KEYHOLD_* environment variable and a line of the
--config file; precedence is flag > environment > file > default.
"keyhold config example" prints a complete commented file.

Memory: two Go runtime variables are settings too. GOMEMLIMIT is the soft
limit of the heap (default 224MiB: the garbage collector works harder near
it, so that the caches of a million keys stay within about 300 MB of RSS);
raise it along with --cache-size. GOGC is the collector's headroom (default
400).

Signals: SIGHUP reopens the audit file (for logrotate), reloads the TLS
certificate and the log level; SIGTERM and SIGINT stop accepting requests and
let in-flight ones finish within --shutdown-timeout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfgFile := configPath(cmd)
			if err := set.Resolve(cmd.Flags(), cfgFile, nil); err != nil {
				return err
			}
			return runServe(cmd.Context(), o, set, stdout, stderr)
		},
	}
	set.Bind(cmd.Flags())
	return cmd
}

// Serve runs `keyhold serve` with args (kept for callers of the old entry
// point).
func Serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := serveCommand(stdout, stderr)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	return cmd.ExecuteContext(ctx)
}

// ramDir makes a temporary directory on a RAM filesystem (/dev/shm).
func ramDir() (string, error) {
	if st, err := os.Stat("/dev/shm"); err != nil || !st.IsDir() {
		return "", errors.New("--in-memory needs /dev/shm (a RAM filesystem) on this system")
	}
	return os.MkdirTemp("/dev/shm", "keyhold-")
}

func runServe(ctx context.Context, o *serveOptions, set *config.Set, stdout, stderr io.Writer) error {
	logOut := stderr
	if f, ok := stderr.(*os.File); ok {
		// A file or pipe costs a system call per write: the request log
		// lines of a busy server go out in batches (see logs.BatchWriter).
		bw := logs.NewBatchWriter(f)
		defer bw.Close()
		logOut = bw
	}
	log, level, err := logs.New(logOut, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return errors.New("tls-cert and tls-key go together")
	}
	if o.inMemory {
		if set.Sources["data-dir"] != "default" {
			return errors.New("in-memory and data-dir exclude each other")
		}
		dir, err := ramDir()
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.dataDir = dir
	}
	// Every path derived from the data directory (HSM token directories
	// in the store, daemons' configs) is absolute, so owner commands run
	// from another working directory find the same files.
	abs, err := datadir.Abs(o.dataDir)
	if err != nil {
		return err
	}
	o.dataDir = abs
	if o.rootKey != "" {
		if o.rootKey, err = filepath.Abs(o.rootKey); err != nil {
			return err
		}
	}
	if o.inMemory && o.databaseURL != "" {
		return errors.New("in-memory and database-url exclude each other")
	}
	cfg := ServeConfig{DatabaseURL: o.databaseURL, DatabaseRetry: 2 * time.Second, RootKeyFile: o.rootKey,
		Caches: kms.CacheSizes{Keys: o.cacheSize, Aliases: o.cacheSize, Grants: o.cacheSize, Policies: o.cacheSize}, DataDir: o.dataDir, Addr: o.addr, Region: o.region, DeletionInterval: o.deletionInterval, Logger: log,
		XKSCAFile: o.xksCA, XKSCallTimeout: o.xksTimeout, AccountID: o.accountID, SeedFile: o.seed, AuditFailOpen: o.auditFailOpen, AuditSyncInterval: o.auditSync, Limits: o.limits,
		Extra: CloudHSMExtra(hsm.Config{Dir: filepath.Join(o.dataDir, "hsm"), Region: o.region, Logger: log, ListenIP: o.hsmListenIP})}
	if o.auditStdout {
		cfg.AuditStdout = stdout
	}
	var certs *certReloader
	if o.tlsCert != "" {
		if certs, err = newCertReloader(o.tlsCert, o.tlsKey); err != nil {
			return err
		}
	}
	in, err := Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer in.Close()
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	bg, stopBG := context.WithCancel(ctx)
	defer stopBG()
	if o.pprofAddr != "" {
		stopPprof, err := servePprof(o.pprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	go in.RunBackground(bg, o.deletionInterval)
	srv := cfg.Limits.Server(in.Handler)
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	scheme := "http"
	var tc *tls.Config
	if certs != nil {
		tc = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get, NextProtos: []string{"h2", "http/1.1"}}
		scheme = "https"
	}
	ln = cfg.Limits.Listen(ln, tc, netlimit.HTTPReject(jsonContentType, "ThrottlingException"))
	rootKey := "file " + in.Config.RootKeyFile
	if o.inMemory {
		rootKey = "in memory (RAM filesystem, removed at exit)"
	}
	log.Info("keyhold serving", "endpoint", scheme+"://"+ln.Addr().String(), "region", o.region, "account", in.AccountID,
		"data_dir", abs, "credentials", filepath.Join(abs, "credentials"), "root_key", rootKey,
		"database", in.databaseName(), "audit", in.Audit.Path, "metrics", scheme+"://"+ln.Addr().String()+"/metrics")
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case err := <-errc:
			if !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		case <-hup:
			reload(log, level, in, certs, set)
		case <-ctx.Done():
			log.Info("shutting down: draining in-flight requests", "deadline", o.shutdownTimeout.String())
			sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				log.Error("in-flight requests did not finish before the shutdown deadline", "err", err)
				srv.Close()
			}
			log.Info("stopped")
			return nil
		}
	}
}

// reload is SIGHUP: reopen the audit file, reload the TLS certificate and
// the log level (from the config file and environment; flags still win).
// Other settings need a restart.
func reload(log *slog.Logger, level *slog.LevelVar, in *Instance, certs *certReloader, set *config.Set) {
	if err := in.Audit.Reopen(); err != nil {
		log.Error("SIGHUP: reopening the audit file failed", "path", in.Audit.Path, "err", err)
	} else {
		log.Info("SIGHUP: audit file reopened", "path", in.Audit.Path)
	}
	if certs != nil {
		if err := certs.load(); err != nil {
			log.Error("SIGHUP: reloading the TLS certificate failed; keeping the previous one", "err", err)
		} else {
			log.Info("SIGHUP: TLS certificate reloaded")
		}
	}
	if set == nil || set.Sources["log-level"] == "--log-level" {
		return
	}
	// Re-resolve file and environment into a fresh copy; only the log
	// level is applied.
	o := &serveOptions{}
	if err := resolveQuiet(serveSettings(o), configFileOf(set)); err != nil {
		log.Error("SIGHUP: configuration not reloaded", "err", err)
		return
	}
	if l, err := logs.ParseLevel(o.logLevel); err == nil && l != level.Level() {
		level.Set(l)
		log.Info("SIGHUP: log level changed", "level", o.logLevel)
	}
}

func configFileOf(set *config.Set) string {
	for _, st := range set.Settings {
		if st.Name == "config" {
			return *st.Target.(*string)
		}
	}
	return ""
}

// resolveQuiet resolves a Set from file and environment only.
func resolveQuiet(set *config.Set, file string) error {
	cmd := &cobra.Command{}
	set.Bind(cmd.Flags())
	return set.Resolve(cmd.Flags(), file, nil)
}

// certReloader serves the current TLS certificate; load replaces it.
type certReloader struct {
	certFile, keyFile string
	mu                sync.RWMutex
	cert              *tls.Certificate
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) load() error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls-cert/tls-key: %w", err)
	}
	r.mu.Lock()
	r.cert = &c
	r.mu.Unlock()
	return nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cert, nil
}

// auditPath is the audit file of a data directory.
func auditPath(dataDir string) string {
	return filepath.Join(dataDir, filepath.FromSlash(audit.DefaultPath))
}

// configPath is --config, else KEYHOLD_CONFIG.
func configPath(cmd *cobra.Command) string {
	if f := cmd.Flags().Lookup("config"); f != nil && f.Changed {
		return f.Value.String()
	}
	return os.Getenv(config.EnvName("config"))
}
