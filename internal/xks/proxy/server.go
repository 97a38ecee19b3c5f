package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyhold/keyhold/internal/sigv4"
	"github.com/keyhold/keyhold/internal/xks"
)

// Server is an XKS proxy. Its handler is safe for concurrent use; Reload
// swaps the per-prefix settings atomically.
type Server struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	verifier sigv4.Verifier
	tokens   *tokenBackends
	injected map[string]Backend

	reloadMu sync.Mutex
	st       atomic.Pointer[state]
}

// state is the reloadable part of the configuration.
type state struct {
	stores   []*store          // longest prefix first
	byPrefix map[string]*store //
	akids    map[string]string // access key id -> secret, across prefixes (ids are unique)
}

type store struct {
	prefix   string
	akids    map[string]bool
	md       []byte
	disabled bool
	keys     map[string]keyEntry
	limiter  *limiter
	backend  Backend
	pkcs11   PKCS11Config
	health   *healthCheck
}

type keyEntry struct {
	label    string
	md       []byte
	disabled bool
}

// Option adjusts a Server.
type Option func(*Server)

// WithLogger sets the access and error log (default: JSON to stderr).
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithClock sets the clock used for SigV4 skew checks and health caching.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithBackend makes the key store at prefix use b instead of opening its
// PKCS#11 token (for tests and fakes). The Server closes b on Close.
func WithBackend(prefix string, b Backend) Option {
	return func(s *Server) { s.injected[prefix] = b }
}

// New builds a Server from cfg, opening the PKCS#11 tokens it names. If
// cfg.SoftHSM2Conf is set it is exported as SOFTHSM2_CONF first; SoftHSM2
// reads it once per process, so one process serves one token directory.
func New(cfg Config, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg.withDefaults(),
		log:      slog.New(slog.NewJSONHandler(os.Stderr, nil)),
		now:      time.Now,
		tokens:   &tokenBackends{open: map[string]*sharedBackend{}},
		injected: map[string]Backend{},
	}
	for _, o := range opts {
		o(s)
	}
	if cfg.SoftHSM2Conf != "" {
		os.Setenv("SOFTHSM2_CONF", cfg.SoftHSM2Conf)
	}
	s.verifier = sigv4.Verifier{Lookup: s.lookup, Now: func() time.Time { return s.now() }, MaxSkew: 5 * time.Minute,
		ContentTypeUnsigned: true} // the XKS spec signs host and x-amz-date only
	st, err := s.build(s.cfg, nil)
	if err != nil {
		return nil, err
	}
	s.st.Store(st)
	return s, nil
}

// build makes a state for cfg, reusing old's backends where the prefix and
// its PKCS#11 settings are unchanged.
func (s *Server) build(cfg Config, old *state) (*state, error) {
	st := &state{byPrefix: map[string]*store{}, akids: map[string]string{}}
	var opened []Backend
	for _, sc := range cfg.KeyStores {
		md, _ := decodeMetadata(sc.CiphertextMetadata)
		ks := &store{
			prefix: sc.URIPathPrefix, akids: map[string]bool{}, md: md,
			disabled: sc.Disabled, keys: map[string]keyEntry{}, pkcs11: sc.PKCS11,
			limiter: newLimiter(sc.MaxRequestsPerSecond),
		}
		for _, c := range sc.Credentials {
			ks.akids[c.AccessKeyID] = true
			st.akids[c.AccessKeyID] = c.SecretAccessKey
		}
		for _, k := range sc.Keys {
			kmd, _ := decodeMetadata(k.CiphertextMetadata)
			if k.CiphertextMetadata == "" {
				kmd = md
			}
			label := k.Label
			if label == "" {
				label = k.ID
			}
			ks.keys[k.ID] = keyEntry{label: label, md: kmd, disabled: k.Disabled}
		}
		if prev := old.lookupPrefix(sc.URIPathPrefix); prev != nil && prev.pkcs11 == sc.PKCS11 && prev.health.label == sc.HealthKeyLabel {
			ks.backend, ks.health = prev.backend, prev.health
		} else {
			b, ok := s.injected[sc.URIPathPrefix]
			if !ok {
				var err error
				if b, err = s.tokens.get(sc.PKCS11); err != nil {
					for _, o := range opened {
						o.Close()
					}
					return nil, fmt.Errorf("proxy: key store %q: %w", sc.URIPathPrefix, err)
				}
				opened = append(opened, b)
			}
			ks.backend = b
			ks.health = &healthCheck{backend: b, label: sc.HealthKeyLabel, ttl: time.Duration(cfg.HealthCacheTTL), timeout: time.Duration(cfg.HSMTimeout), now: s.now}
		}
		st.stores = append(st.stores, ks)
		st.byPrefix[ks.prefix] = ks
	}
	sort.Slice(st.stores, func(i, j int) bool { return len(st.stores[i].prefix) > len(st.stores[j].prefix) })
	return st, nil
}

func (st *state) lookupPrefix(p string) *store {
	if st == nil {
		return nil
	}
	return st.byPrefix[p]
}

// Reload replaces credentials, keys, metadata, disabled flags and quotas
// from cfg. Listener, TLS, region, limits and timeouts keep their values from
// New. Key stores whose PKCS#11 settings changed are re-opened; removed ones
// are closed.
func (s *Server) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.st.Load()
	cfg.Limits, cfg.HSMTimeout, cfg.HealthCacheTTL = s.cfg.Limits, s.cfg.HSMTimeout, s.cfg.HealthCacheTTL
	st, err := s.build(cfg, old)
	if err != nil {
		return err
	}
	s.st.Store(st)
	kept := map[Backend]bool{}
	for _, ks := range st.stores {
		kept[ks.backend] = true
	}
	for _, ks := range old.stores {
		if !kept[ks.backend] {
			ks.backend.Close()
			kept[ks.backend] = true
		}
	}
	s.log.Info("xks proxy configuration reloaded", "keyStores", len(st.stores))
	return nil
}

// ReloadFile reads the configuration file again and applies it (SIGHUP).
func (s *Server) ReloadFile(path string) error {
	cfg, err := LoadConfig(path)
	if err != nil {
		return err
	}
	return s.Reload(cfg)
}

// Close releases the key stores' backends.
func (s *Server) Close() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	st := s.st.Load()
	var errs []error
	closed := map[Backend]bool{}
	for _, ks := range st.stores {
		if !closed[ks.backend] {
			closed[ks.backend] = true
			errs = append(errs, ks.backend.Close())
		}
	}
	return errors.Join(errs...)
}

func (s *Server) lookup(_ context.Context, akid string) (string, error) {
	if secret, ok := s.st.Load().akids[akid]; ok {
		return secret, nil
	}
	return "", fmt.Errorf("proxy: %w", sigv4.ErrUnknownAccessKey)
}

// apiError is an answer from the spec's error table.
type apiError struct {
	name, msg string
	cause     error // logged only
}

func (e *apiError) Error() string { return e.name + ": " + e.msg }

func fail(name, msg string) *apiError { return &apiError{name: name, msg: msg} }

func failCause(name, msg string, cause error) *apiError {
	return &apiError{name: name, msg: msg, cause: cause}
}

// request is what the access log records.
type request struct {
	api, prefix, keyID string
	md                 *xks.RequestMetadata
}

// Handler returns the HTTP handler (also usable under httptest).
func (s *Server) Handler() http.Handler { return s }

// ServeHTTP routes on the escaped path exactly as sent: no cleaning, no
// redirects, because the path is part of what the client signed.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	path := r.URL.EscapedPath()
	if path == "/ping" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
		return
	}
	st := s.st.Load()
	req := request{}
	status, resp, aerr := s.serve(st, r, path, &req)
	if aerr != nil {
		status = xks.ErrorStatus[aerr.name]
		if aerr.name == "" {
			status = http.StatusMethodNotAllowed
		}
	}
	w.Header().Set("Content-Type", "application/json")
	var body []byte
	switch {
	case status == http.StatusMethodNotAllowed:
		w.Header().Set("Allow", "POST")
		body, _ = json.Marshal(xks.ErrorResponse{ErrorName: xks.ValidationException, ErrorMessage: "Only POST is supported on this URI"})
	case aerr != nil:
		body, _ = json.Marshal(xks.ErrorResponse{ErrorName: aerr.name, ErrorMessage: clipMessage(aerr.msg)})
	default:
		var err error
		if body, err = json.Marshal(resp); err != nil {
			status = http.StatusInternalServerError
			aerr = failCause(xks.InternalException, "Internal error", err)
			body, _ = json.Marshal(xks.ErrorResponse{ErrorName: aerr.name, ErrorMessage: aerr.msg})
		}
	}
	body = append(body, '\n')
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
	s.logRequest(r, req, status, aerr, time.Since(start))
}

func (s *Server) logRequest(r *http.Request, req request, status int, aerr *apiError, d time.Duration) {
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("api", req.api),
		slog.String("prefix", req.prefix),
		slog.String("keyId", req.keyID),
		slog.Int("status", status),
		slog.Float64("latencyMs", float64(d.Microseconds())/1000),
		slog.String("remote", r.RemoteAddr),
	}
	if req.md != nil {
		attrs = append(attrs,
			slog.String("kmsRequestId", req.md.KMSRequestID),
			slog.String("kmsOperation", req.md.KMSOperation),
			slog.String("awsPrincipalArn", req.md.AWSPrincipalARN),
			slog.String("kmsKeyArn", req.md.KMSKeyARN),
			slog.String("kmsViaService", req.md.KMSViaService),
		)
	}
	level := slog.LevelInfo
	outcome := "ok"
	if aerr != nil {
		outcome = aerr.name
		if aerr.name == "" {
			outcome = "MethodNotAllowed"
		}
		if aerr.cause != nil {
			attrs = append(attrs, slog.String("cause", aerr.cause.Error()))
		}
		if status >= 500 {
			level = slog.LevelError
		}
	}
	attrs = append(attrs, slog.String("outcome", outcome))
	s.log.LogAttrs(r.Context(), level, "xks request", attrs...)
}

// clipMessage keeps an error message printable ASCII and under 512 chars.
func clipMessage(m string) string {
	b := []byte(m)
	out := b[:0]
	for _, c := range b {
		if c >= 0x20 && c < 0x7f {
			out = append(out, c)
		}
	}
	if len(out) > 500 {
		out = out[:500]
	}
	return string(out)
}

// route splits path into key store, API and key id.
func (st *state) route(path string) (ks *store, api, keyID string, ok bool) {
	for _, c := range st.stores {
		base := c.prefix + xks.PathSuffix + "/"
		if !strings.HasPrefix(path, base) {
			continue
		}
		rest := path[len(base):]
		if rest == "health" {
			return c, "health", "", true
		}
		parts := strings.Split(rest, "/")
		if len(parts) != 3 || parts[0] != "keys" || !keyIDRE.MatchString(parts[1]) {
			return nil, "", "", false
		}
		switch parts[2] {
		case "metadata", "encrypt", "decrypt":
			return c, parts[2], parts[1], true
		}
		return nil, "", "", false
	}
	return nil, "", "", false
}

func (s *Server) bodyLimit() int64 {
	// Base64 of the largest plaintext and AAD, plus room for the metadata
	// (ARNs up to 2048 chars) and the other fields.
	return int64((s.cfg.Limits.MaxPlaintextBytes+s.cfg.Limits.MaxAADBytes)*4/3) + 32<<10
}

func (s *Server) serve(st *state, r *http.Request, path string, req *request) (int, any, *apiError) {
	ks, api, keyID, ok := st.route(path)
	if !ok {
		return 0, nil, fail(xks.InvalidUriPathException, "No such URI path")
	}
	req.api, req.prefix, req.keyID = api, ks.prefix, keyID
	if r.Method != http.MethodPost {
		return 0, nil, &apiError{msg: "method not allowed"}
	}
	limit := s.bodyLimit()
	if r.ContentLength > limit {
		return 0, nil, fail(xks.UnsupportedOperationException, "Request body exceeds this proxy's size limits")
	}
	authErr := func(err error) *apiError {
		var se *sigv4.Error
		if errors.As(err, &se) || errors.Is(err, sigv4.ErrUnknownAccessKey) {
			return failCause(xks.AuthenticationFailedException, "Request signature could not be verified", err)
		}
		return failCause(xks.InternalException, "Internal error", err)
	}
	// Everything the headers carry is checked before the body is read.
	pending, err := s.verifier.Begin(r.Context(), r, sigv4.Scope{Region: s.cfg.Region, Service: xks.Service})
	if err != nil {
		return 0, nil, authErr(err)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return 0, nil, failCause(xks.ValidationException, "Cannot read request body", err)
	}
	if int64(len(body)) > limit {
		return 0, nil, fail(xks.UnsupportedOperationException, "Request body exceeds this proxy's size limits")
	}
	res, err := pending.Finish(body)
	if err != nil {
		return 0, nil, authErr(err)
	}
	if !ks.akids[res.AccessKeyID] {
		return 0, nil, fail(xks.AuthenticationFailedException, "Access key is not valid for this URI path")
	}
	if !ks.limiter.allow(s.now()) {
		return 0, nil, fail(xks.ThrottlingException, "Request rate exceeds this key store's quota")
	}
	switch api {
	case "health":
		return s.health(r.Context(), ks, body, req)
	case "metadata":
		return s.metadata(r.Context(), ks, keyID, body, req)
	case "encrypt":
		return s.encrypt(r.Context(), ks, keyID, body, req)
	default:
		return s.decrypt(r.Context(), ks, keyID, body, req)
	}
}

func decode(body []byte, v any) *apiError {
	if err := json.Unmarshal(body, v); err != nil {
		return failCause(xks.ValidationException, "Request body is not valid JSON for this API", err)
	}
	return nil
}

// checkMetadata enforces the required requestMetadata fields per API.
func checkMetadata(md *xks.RequestMetadata, api string) *apiError {
	if md == nil {
		return fail(xks.ValidationException, "requestMetadata is required")
	}
	if md.KMSRequestID == "" || md.KMSOperation == "" {
		return fail(xks.ValidationException, "requestMetadata.kmsRequestId and kmsOperation are required")
	}
	if api != "health" && md.AWSPrincipalARN == "" {
		return fail(xks.ValidationException, "requestMetadata.awsPrincipalArn is required")
	}
	if (api == "encrypt" || api == "decrypt") && md.KMSKeyARN == "" {
		return fail(xks.ValidationException, "requestMetadata.kmsKeyArn is required")
	}
	return nil
}

func (ks *store) key(id string) (keyEntry, *apiError) {
	if ks.disabled {
		return keyEntry{}, fail(xks.InvalidStateException, "The key store is disabled")
	}
	k, ok := ks.keys[id]
	if !ok {
		return keyEntry{}, fail(xks.KeyNotFoundException, "No external key with this id")
	}
	return k, nil
}

// backendError maps a Backend error to the spec's table.
func backendError(err error) *apiError {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, ErrKeyNotFound):
		return failCause(xks.KeyNotFoundException, "External key not found in the key manager", err)
	case errors.Is(err, ErrKeyUsage):
		return failCause(xks.InvalidKeyUsageException, "The external key does not allow this operation", err)
	case errors.Is(err, ErrDecrypt):
		return failCause(xks.InvalidCiphertextException, "Ciphertext, IV, AAD, tag or ciphertext metadata is invalid", err)
	}
	return failCause(xks.InternalException, "The external key manager failed", err)
}

// call runs fn with the HSM timeout. A call that outlives it answers
// DependencyTimeoutException; fn keeps running (PKCS#11 calls cannot be
// cancelled) and its result is discarded.
func (s *Server) call(ctx context.Context, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	t := time.NewTimer(time.Duration(s.cfg.HSMTimeout))
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return failCause(xks.DependencyTimeoutException, "The external key manager did not answer in time", errors.New("HSM timeout"))
	case <-ctx.Done():
		return failCause(xks.DependencyTimeoutException, "Request cancelled", ctx.Err())
	}
}

func (s *Server) keyInfo(ctx context.Context, ks *store, label string) (KeyInfo, *apiError) {
	if c, ok := ks.backend.(cachedKeys); ok {
		if info, ok := c.CachedKey(label); ok {
			return info, nil
		}
	}
	var info KeyInfo
	err := s.call(ctx, func() error {
		var err error
		info, err = ks.backend.Key(ctx, label)
		return err
	})
	if err != nil {
		return KeyInfo{}, backendError(err)
	}
	return info, nil
}

func (s *Server) metadata(ctx context.Context, ks *store, keyID string, body []byte, req *request) (int, any, *apiError) {
	var in xks.MetadataRequest
	if e := decode(body, &in); e != nil {
		return 0, nil, e
	}
	req.md = in.RequestMetadata
	if e := checkMetadata(in.RequestMetadata, "metadata"); e != nil {
		return 0, nil, e
	}
	k, e := ks.key(keyID)
	if e != nil {
		return 0, nil, e
	}
	info, e := s.keyInfo(ctx, ks, k.label)
	if e != nil {
		return 0, nil, e
	}
	status := xks.KeyStatusEnabled
	if k.disabled {
		status = xks.KeyStatusDisabled
	}
	return http.StatusOK, xks.MetadataResponse{KeySpec: info.Spec, KeyUsage: info.Usage, KeyStatus: status}, nil
}

func (s *Server) usableKey(ctx context.Context, ks *store, keyID string, encrypt bool) (keyEntry, KeyInfo, *apiError) {
	k, e := ks.key(keyID)
	if e != nil {
		return k, KeyInfo{}, e
	}
	if k.disabled {
		return k, KeyInfo{}, fail(xks.InvalidStateException, "The external key is disabled")
	}
	info, e := s.keyInfo(ctx, ks, k.label)
	if e != nil {
		return k, info, e
	}
	if info.Spec != xks.KeySpecAES256 {
		return k, info, fail(xks.InvalidKeyUsageException, "The external key is not an AES-256 key")
	}
	if encrypt && !info.CanEncrypt {
		return k, info, fail(xks.InvalidKeyUsageException, "The external key does not allow ENCRYPT")
	}
	if !encrypt && !info.CanDecrypt {
		return k, info, fail(xks.InvalidKeyUsageException, "The external key does not allow DECRYPT")
	}
	return k, info, nil
}

func (s *Server) encrypt(ctx context.Context, ks *store, keyID string, body []byte, req *request) (int, any, *apiError) {
	var in xks.EncryptRequest
	if e := decode(body, &in); e != nil {
		return 0, nil, e
	}
	req.md = in.RequestMetadata
	if e := checkMetadata(in.RequestMetadata, "encrypt"); e != nil {
		return 0, nil, e
	}
	switch {
	case in.EncryptionAlgorithm != xks.EncryptionAlgorithm:
		return 0, nil, fail(xks.ValidationException, "encryptionAlgorithm must be AES_GCM")
	case in.Plaintext == nil:
		return 0, nil, fail(xks.ValidationException, "plaintext is required")
	case in.CiphertextDataIntegrityValueAlgorithm != "" && in.CiphertextDataIntegrityValueAlgorithm != xks.CDIVAlgorithm:
		return 0, nil, fail(xks.ValidationException, "ciphertextDataIntegrityValueAlgorithm must be SHA_256")
	case len(in.Plaintext) > s.cfg.Limits.MaxPlaintextBytes:
		return 0, nil, fail(xks.UnsupportedOperationException, fmt.Sprintf("plaintext is larger than %d bytes", s.cfg.Limits.MaxPlaintextBytes))
	case len(in.AdditionalAuthenticatedData) > s.cfg.Limits.MaxAADBytes:
		return 0, nil, fail(xks.UnsupportedOperationException, fmt.Sprintf("additionalAuthenticatedData is larger than %d bytes", s.cfg.Limits.MaxAADBytes))
	}
	k, info, e := s.usableKey(ctx, ks, keyID, true)
	if e != nil {
		return 0, nil, e
	}
	gcmAAD, err := xks.GCMAAD(in.AdditionalAuthenticatedData, k.md)
	if err != nil {
		return 0, nil, failCause(xks.InternalException, "Internal error", err)
	}
	iv := make([]byte, 12)
	if _, err := rand.Read(iv); err != nil {
		return 0, nil, failCause(xks.InternalException, "Internal error", err)
	}
	// The encrypt and, with a CDIV, its verification run as one call to
	// the key manager (one goroutine and timer, one HSM timeout for both).
	var out xks.EncryptResponse
	if err := s.call(ctx, func() error {
		sealed, ivUsed, err := ks.backend.Encrypt(ctx, k.label, iv, gcmAAD, in.Plaintext)
		if err != nil {
			return backendError(err)
		}
		if len(sealed) != len(in.Plaintext)+xks.AuthTagSize {
			return failCause(xks.InternalException, "Internal error", fmt.Errorf("HSM returned %d bytes for %d", len(sealed), len(in.Plaintext)))
		}
		out = xks.EncryptResponse{
			Ciphertext:           sealed[:len(in.Plaintext)],
			AuthenticationTag:    sealed[len(in.Plaintext):],
			InitializationVector: ivUsed,
			CiphertextMetadata:   k.md,
		}
		if in.CiphertextDataIntegrityValueAlgorithm == "" {
			return nil
		}
		// The spec's order (XKS API, appendix C): CDIV over what we are
		// about to return, then a decrypt of exactly those values, so a
		// corruption in between is caught rather than hidden.
		out.CiphertextDataIntegrityValue = xks.CDIV(in.AdditionalAuthenticatedData, out.CiphertextMetadata,
			out.InitializationVector, out.Ciphertext, out.AuthenticationTag)
		if !info.CanDecrypt {
			return nil
		}
		return s.verifyDecrypt(ctx, ks, k, in, out)
	}); err != nil {
		return 0, nil, backendError(err)
	}
	return http.StatusOK, out, nil
}

// verifyDecrypt decrypts what encrypt is about to return and compares it
// with the request's plaintext (on the caller's goroutine: it runs inside
// encrypt's call).
func (s *Server) verifyDecrypt(ctx context.Context, ks *store, k keyEntry, in xks.EncryptRequest, out xks.EncryptResponse) error {
	aad, err := xks.GCMAAD(in.AdditionalAuthenticatedData, out.CiphertextMetadata)
	if err != nil {
		return failCause(xks.InternalException, "Internal error", err)
	}
	sealed := append(append(make([]byte, 0, len(out.Ciphertext)+len(out.AuthenticationTag)), out.Ciphertext...), out.AuthenticationTag...)
	pt, err := ks.backend.Decrypt(ctx, k.label, out.InitializationVector, aad, sealed)
	if err != nil {
		return failCause(xks.InternalException, "Encrypt result failed verification", err)
	}
	if subtle.ConstantTimeCompare(pt, in.Plaintext) != 1 {
		return failCause(xks.InternalException, "Encrypt result failed verification", errors.New("verify-decrypt mismatch"))
	}
	return nil
}

func (s *Server) decrypt(ctx context.Context, ks *store, keyID string, body []byte, req *request) (int, any, *apiError) {
	var in xks.DecryptRequest
	if e := decode(body, &in); e != nil {
		return 0, nil, e
	}
	req.md = in.RequestMetadata
	if e := checkMetadata(in.RequestMetadata, "decrypt"); e != nil {
		return 0, nil, e
	}
	switch {
	case in.EncryptionAlgorithm != xks.EncryptionAlgorithm:
		return 0, nil, fail(xks.ValidationException, "encryptionAlgorithm must be AES_GCM")
	case in.Ciphertext == nil:
		return 0, nil, fail(xks.ValidationException, "ciphertext is required")
	case len(in.InitializationVector) != 12 && len(in.InitializationVector) != 16:
		return 0, nil, fail(xks.ValidationException, "initializationVector must be 12 or 16 bytes")
	case len(in.AuthenticationTag) != xks.AuthTagSize:
		return 0, nil, fail(xks.ValidationException, "authenticationTag must be 16 bytes")
	case len(in.CiphertextMetadata) > xks.MaxCiphertextMetadata:
		return 0, nil, fail(xks.ValidationException, "ciphertextMetadata must be at most 20 bytes")
	case len(in.Ciphertext) > s.cfg.Limits.MaxPlaintextBytes:
		return 0, nil, fail(xks.UnsupportedOperationException, fmt.Sprintf("ciphertext is larger than %d bytes", s.cfg.Limits.MaxPlaintextBytes))
	case len(in.AdditionalAuthenticatedData) > s.cfg.Limits.MaxAADBytes:
		return 0, nil, fail(xks.UnsupportedOperationException, fmt.Sprintf("additionalAuthenticatedData is larger than %d bytes", s.cfg.Limits.MaxAADBytes))
	}
	k, _, e := s.usableKey(ctx, ks, keyID, false)
	if e != nil {
		return 0, nil, e
	}
	aad, err := xks.GCMAAD(in.AdditionalAuthenticatedData, in.CiphertextMetadata)
	if err != nil {
		return 0, nil, fail(xks.ValidationException, "additionalAuthenticatedData is too long")
	}
	sealed := append(append(make([]byte, 0, len(in.Ciphertext)+16), in.Ciphertext...), in.AuthenticationTag...)
	var pt []byte
	if err := s.call(ctx, func() error {
		var err error
		pt, err = ks.backend.Decrypt(ctx, k.label, in.InitializationVector, aad, sealed)
		return err
	}); err != nil {
		return 0, nil, backendError(err)
	}
	return http.StatusOK, xks.DecryptResponse{Plaintext: pt}, nil
}

func (s *Server) health(ctx context.Context, ks *store, body []byte, req *request) (int, any, *apiError) {
	var in xks.HealthRequest
	if e := decode(body, &in); e != nil {
		return 0, nil, e
	}
	req.md = in.RequestMetadata
	if e := checkMetadata(in.RequestMetadata, "health"); e != nil {
		return 0, nil, e
	}
	if ks.disabled {
		return 0, nil, fail(xks.InvalidStateException, "The key store is disabled")
	}
	r := ks.health.get(ctx)
	if r.err != nil {
		s.log.Warn("xks health check failed", "prefix", ks.prefix, "cause", r.err.Error())
	}
	return http.StatusOK, xks.HealthResponse{
		XksProxyFleetSize: 1,
		XksProxyVendor:    "keyhold",
		XksProxyModel:     "keyhold-xks-proxy",
		EKMVendor:         orDefault(r.ekm.Vendor, "unknown"),
		EKMFleetDetails: []xks.EKMFleetDetail{{
			ID: orDefault(r.ekm.ID, "ekm-1"), Model: orDefault(r.ekm.Model, "unknown"), HealthStatus: r.status,
		}},
	}, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// healthCheck runs a real encrypt+decrypt on the key store's test key and
// caches the outcome for ttl (at most a minute, per the spec).
type healthCheck struct {
	backend Backend
	label   string
	ttl     time.Duration
	timeout time.Duration
	now     func() time.Time

	mu   sync.Mutex
	last healthResult
	at   time.Time
}

type healthResult struct {
	status string
	ekm    EKMInfo
	err    error
}

func (h *healthCheck) get(ctx context.Context) healthResult {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.at.IsZero() && h.now().Sub(h.at) < h.ttl {
		return h.last
	}
	h.last = h.check(ctx)
	h.at = h.now()
	return h.last
}

func (h *healthCheck) check(ctx context.Context) healthResult {
	done := make(chan healthResult, 1)
	go func() {
		r := healthResult{status: xks.HealthUnavailable}
		ekm, err := h.backend.EKM(ctx)
		if err != nil {
			r.err = err
			done <- r
			return
		}
		r.ekm = ekm
		iv, probe := make([]byte, 12), make([]byte, 32)
		rand.Read(iv)
		rand.Read(probe)
		aad := []byte("keyhold-xks-health")
		sealed, ivUsed, err := h.backend.Encrypt(ctx, h.label, iv, aad, probe)
		if err != nil {
			r.err = fmt.Errorf("health encrypt: %w", err)
			done <- r
			return
		}
		pt, err := h.backend.Decrypt(ctx, h.label, ivUsed, aad, sealed)
		if err != nil || !bytes.Equal(pt, probe) {
			r.err = fmt.Errorf("health decrypt: %v", err)
			done <- r
			return
		}
		r.status = xks.HealthActive
		done <- r
	}()
	t := time.NewTimer(h.timeout)
	defer t.Stop()
	select {
	case r := <-done:
		return r
	case <-t.C:
		return healthResult{status: xks.HealthUnavailable, err: errors.New("health check timed out")}
	}
}

// limiter is a token bucket allowing rate requests per second with a burst
// of one second's worth. A nil limiter allows everything.
type limiter struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newLimiter(rate float64) *limiter {
	if rate <= 0 {
		return nil
	}
	return &limiter{rate: rate, tokens: max(rate, 1)}
}

func (l *limiter) allow(now time.Time) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens = min(max(l.rate, 1), l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
