// Package console is keyhold's web console: server-rendered HTML pages over
// the same operation tables the JSON API serves, mounted at /console/ on the
// API's listener.
//
// It never calls the domain itself: every action is an API operation run
// through the server's audited pipeline (server.Handler.Invoke) as the
// signed-in principal, so a console user meets exactly the authorization,
// validation, audit trail and error texts of the API. It holds no secret
// beyond the session: the secret access key is checked at sign-in and then
// forgotten; the session keeps the access key id (and the session token of
// temporary credentials), re-authenticated on every call.
//
// Browser hardening: HttpOnly, SameSite=Strict session cookie (Secure over
// HTTPS) with an idle timeout; a CSRF token on every state-changing form; a
// Content-Security-Policy that allows only the console's own script and
// style files (no inline script); assets embedded in the binary.
package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/server"
)

// UserAgent is the user agent of every API call the console makes, as the
// audit trail records it.
const UserAgent = "keyhold-console/1.0"

// API is what the console needs from the listener: run an operation as a
// principal, and check a credential at sign-in.
type API interface {
	Invoke(ctx context.Context, in server.Invocation) server.InvokeResult
	SignIn(ctx context.Context, accessKeyID, secret, sessionToken string) (awsjson.Caller, *awsjson.Error)
}

// Subnet is one subnet of keyhold's default network (for Create cluster).
type Subnet struct{ ID, AvailabilityZone string }

// Config builds a Handler.
type Config struct {
	API    API
	Region string
	// Subnets are the subnets clusters may use, one per availability zone.
	Subnets []Subnet
	// IdleTimeout ends a session not used for this long (0: 15 minutes).
	IdleTimeout time.Duration
	Logger      *slog.Logger
	Now         func() time.Time
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Handler serves /console/.
type Handler struct {
	cfg    Config
	mux    *http.ServeMux
	pages  map[string]*template.Template
	static http.Handler

	mu       sync.Mutex
	sessions map[string]*session
}

type session struct {
	id           string
	csrf         string
	accessKeyID  string
	sessionToken string
	caller       awsjson.Caller
	lastSeen     time.Time
	flash        string
	flashErr     *awsjson.Error
}

const (
	cookieName    = "keyhold_console"
	preCookieName = "keyhold_console_signin"
	basePath      = "/console/"
)

// New builds the console.
func New(cfg Config) (*Handler, error) {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 15 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{cfg: cfg, sessions: make(map[string]*session), pages: make(map[string]*template.Template)}
	if err := h.parseTemplates(); err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	h.static = http.StripPrefix("/console/static/", http.FileServer(http.FS(sub)))
	h.routes()
	return h, nil
}

var funcs = template.FuncMap{
	"date": func(sec float64) string {
		if sec == 0 {
			return "-"
		}
		return time.Unix(int64(sec), int64((sec-float64(int64(sec)))*1e9)).UTC().Format("Jan 2, 2006 15:04 MST")
	},
	"has": func(list []string, s string) bool {
		for _, v := range list {
			if v == s {
				return true
			}
		}
		return false
	},
	"troubleshoot": troubleshooting,
	"join":         strings.Join,
	"add":          func(a, b int) int { return a + b },
	"seq": func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	},
}

func (h *Handler) parseTemplates() error {
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return fmt.Errorf("console: %s: %w", n, err)
		}
		h.pages[base] = t
	}
	return nil
}

// ServeHTTP adds the security headers every console answer carries.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cache-Control", "no-store")
	if r.Method == http.MethodGet && r.URL.Path == "/" {
		http.Redirect(w, r, basePath, http.StatusFound)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// Mount serves the console at /console/ (and GET / redirecting there) in
// front of api, which keeps every other path.
func Mount(c http.Handler, api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, basePath) || r.URL.Path == "/console" || (r.URL.Path == "/" && r.Method == http.MethodGet) {
			c.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, s *session)

func (h *Handler) routes() {
	m := http.NewServeMux()
	m.Handle("GET /console/static/", h.static)
	m.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, basePath, http.StatusFound) })
	m.HandleFunc("GET /console/signin", h.signInPage)
	m.HandleFunc("POST /console/signin", h.signIn)
	m.HandleFunc("POST /console/signout", h.authed(h.signOut))
	m.HandleFunc("GET /console/{$}", h.authed(func(w http.ResponseWriter, r *http.Request, s *session) {
		http.Redirect(w, r, "/console/keys", http.StatusFound)
	}))
	m.HandleFunc("GET /console/keys", h.authed(h.keysPage))
	m.HandleFunc("GET /console/keys/create", h.authed(h.createKeyPage))
	m.HandleFunc("POST /console/keys/create", h.authed(h.createKeyPage))
	m.HandleFunc("GET /console/keys/{id}", h.authed(h.keyPage))
	m.HandleFunc("POST /console/keys/{id}/{action}", h.authed(h.keyAction))
	m.HandleFunc("GET /console/keystores", h.authed(h.storesPage))
	m.HandleFunc("GET /console/keystores/create", h.authed(h.createStorePage))
	m.HandleFunc("POST /console/keystores/create", h.authed(h.createStorePage))
	m.HandleFunc("GET /console/keystores/{id}", h.authed(h.storePage))
	m.HandleFunc("POST /console/keystores/{id}/{action}", h.authed(h.storeAction))
	m.HandleFunc("GET /console/clusters", h.authed(h.clustersPage))
	m.HandleFunc("POST /console/clusters/create", h.authed(h.createCluster))
	m.HandleFunc("GET /console/clusters/{id}", h.authed(h.clusterPage))
	m.HandleFunc("GET /console/clusters/{id}/csr", h.authed(h.clusterCSR))
	m.HandleFunc("POST /console/clusters/{id}/{action}", h.authed(h.clusterAction))
	h.mux = m
}

func randomToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func secure(r *http.Request) bool { return r.TLS != nil }

func (h *Handler) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: basePath, HttpOnly: true, Secure: secure(r),
		SameSite: http.SameSiteStrictMode, MaxAge: maxAge})
}

// current returns the request's live session, ending it when idle too long.
func (h *Handler) current(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	now := h.cfg.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sessions[c.Value]
	if s == nil {
		return nil
	}
	if now.Sub(s.lastSeen) > h.cfg.IdleTimeout {
		delete(h.sessions, c.Value)
		return nil
	}
	s.lastSeen = now
	return s
}

// sameOrigin refuses cross-site posts even before the CSRF token is read:
// a browser names the posting page's origin.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return o == ""
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// authed requires a session, and on POST a matching CSRF token.
func (h *Handler) authed(next handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := h.current(r)
		if s == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/console/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
				return
			}
			http.Error(w, "Your console session has ended. Sign in again.", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 2<<20)
			if err := r.ParseMultipartForm(1 << 20); err != nil && err != http.ErrNotMultipart {
				http.Error(w, "The form could not be read.", http.StatusBadRequest)
				return
			}
			if !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.csrf)) != 1 {
				http.Error(w, "The form's CSRF token is missing or does not match this session. Reload the page and try again.", http.StatusForbidden)
				return
			}
		}
		next(w, r, s)
	}
}

type signInData struct {
	Token, Next, AccessKeyID string
}

func (h *Handler) signInPage(w http.ResponseWriter, r *http.Request) {
	if h.current(r) != nil {
		http.Redirect(w, r, "/console/keys", http.StatusFound)
		return
	}
	tok := randomToken()
	h.setCookie(w, r, preCookieName, tok, 600)
	h.render(w, r, nil, "signin", "Sign in", "", signInData{Token: tok, Next: safeNext(r.URL.Query().Get("next"))}, nil)
}

// safeNext keeps a post-sign-in redirect inside the console.
func safeNext(n string) string {
	if !strings.HasPrefix(n, basePath) || strings.HasPrefix(n, "//") || strings.ContainsAny(n, "\\\r\n") {
		return "/console/keys"
	}
	return n
}

func (h *Handler) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "The form could not be read.", http.StatusBadRequest)
		return
	}
	// Sign-in CSRF: the form's token must match the cookie set with it.
	c, err := r.Cookie(preCookieName)
	if err != nil || !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue("csrf"))) != 1 {
		http.Error(w, "The sign-in form expired. Reload the page and try again.", http.StatusForbidden)
		return
	}
	ak := strings.TrimSpace(r.PostFormValue("access_key_id"))
	caller, ae := h.cfg.API.SignIn(r.Context(), ak, r.PostFormValue("secret_access_key"), strings.TrimSpace(r.PostFormValue("session_token")))
	if ae != nil {
		tok := randomToken()
		h.setCookie(w, r, preCookieName, tok, 600)
		w.WriteHeader(http.StatusUnauthorized)
		h.render(w, r, nil, "signin", "Sign in", "", signInData{Token: tok, Next: safeNext(r.PostFormValue("next")), AccessKeyID: ak}, ae)
		return
	}
	s := &session{id: randomToken(), csrf: randomToken(), accessKeyID: ak, sessionToken: strings.TrimSpace(r.PostFormValue("session_token")),
		caller: caller, lastSeen: h.cfg.Now()}
	h.mu.Lock()
	// Forget idle sessions while here: the map stays as small as the set
	// of people using the console.
	for id, old := range h.sessions {
		if h.cfg.Now().Sub(old.lastSeen) > h.cfg.IdleTimeout {
			delete(h.sessions, id)
		}
	}
	h.sessions[s.id] = s
	h.mu.Unlock()
	h.setCookie(w, r, preCookieName, "", -1)
	h.setCookie(w, r, cookieName, s.id, 0)
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

func (h *Handler) signOut(w http.ResponseWriter, r *http.Request, s *session) {
	h.mu.Lock()
	delete(h.sessions, s.id)
	h.mu.Unlock()
	h.setCookie(w, r, cookieName, "", -1)
	http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
}

// pageData is what every page template gets.
type pageData struct {
	Title   string
	Nav     string
	Region  string
	Regions []string
	Caller  awsjson.Caller
	CSRF    string
	Flash   string
	Err     *awsjson.Error
	Refresh int // seconds; console.js reloads the page while > 0
	Data    any
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, s *session, page, title, nav string, data any, errShown *awsjson.Error) {
	t := h.pages[page]
	pd := pageData{Title: title, Nav: nav, Region: h.cfg.Region, Regions: []string{h.cfg.Region}, Data: data, Err: errShown}
	if s != nil {
		pd.Caller, pd.CSRF = s.caller, s.csrf
		h.mu.Lock()
		pd.Flash = s.flash
		if pd.Err == nil {
			pd.Err = s.flashErr
		}
		s.flash, s.flashErr = "", nil
		h.mu.Unlock()
	}
	if rf, ok := data.(interface{ refresh() int }); ok {
		pd.Refresh = rf.refresh()
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", pd); err != nil {
		h.cfg.Logger.Error("console: rendering", "page", page, "err", err)
		http.Error(w, "The page could not be rendered.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

// redirect ends a POST with a GET of target, carrying a one-time message.
func (h *Handler) redirect(w http.ResponseWriter, r *http.Request, s *session, target, flash string, ae *awsjson.Error) {
	h.mu.Lock()
	s.flash, s.flashErr = flash, ae
	h.mu.Unlock()
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// Target prefixes of the operation tables the console calls.
const (
	kmsAPI = "TrentService"
	hsmAPI = "BaldrApiService"
)

// call runs one API operation as the session's principal: in is the JSON
// request, out (if not nil) receives the JSON answer.
func (h *Handler) call(r *http.Request, s *session, target, op string, in, out any) *awsjson.Error {
	body, err := json.Marshal(in)
	if err != nil {
		return &awsjson.Error{Type: "KMSInternalException", Status: 500, Message: "The console could not encode the request."}
	}
	res := h.cfg.API.Invoke(r.Context(), server.Invocation{TargetPrefix: target, Operation: op, Body: body,
		AccessKeyID: s.accessKeyID, SessionToken: s.sessionToken, SourceIP: clientIP(r), UserAgent: UserAgent,
		SecureTransport: r.TLS != nil})
	if res.Err != nil {
		return res.Err
	}
	if out != nil {
		if err := json.Unmarshal(res.Body, out); err != nil {
			h.cfg.Logger.Error("console: decoding an answer", "operation", op, "err", err)
			return &awsjson.Error{Type: "KMSInternalException", Status: 500, Message: "The console could not read the answer."}
		}
	}
	return nil
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// troubleshooting is the documented advice for a ConnectionErrorCode.
func troubleshooting(code string) string {
	return connectionHelp[code]
}

var connectionHelp = map[string]string{
	"INTERNAL_ERROR":                                 "keyhold could not complete the request because of an internal error. Retry; to retry a connection, disconnect the key store first.",
	"NETWORK_ERRORS":                                 "Network errors kept keyhold from reaching the key store's backing service. This is usually transient: disconnect, wait a moment, then connect again.",
	"INVALID_CREDENTIALS":                            "The credential does not work: for a CloudHSM key store, the key store password does not match the kmsuser crypto user's password (have a crypto officer change it, then edit the key store's password and connect); for an external key store, the XKS proxy rejects the proxy authentication credential.",
	"CLUSTER_NOT_FOUND":                              "No CloudHSM cluster has the key store's cluster ID: it is wrong or the cluster was deleted. Create a cluster from a recent backup of the original cluster, then edit the key store's cluster ID.",
	"INSUFFICIENT_CLOUDHSM_HSMS":                     "The cluster has no active HSM. Add at least one HSM (two, in different Availability Zones, to create keys), then connect.",
	"INSUFFICIENT_FREE_ADDRESSES_IN_SUBNET":          "A subnet of the cluster has no free IP address for keyhold's network interface. Free addresses, or restore a backup into a cluster with larger subnets.",
	"SUBNET_NOT_FOUND":                               "A subnet of the cluster configuration was deleted. Create a cluster from a backup in new subnets and edit the key store's cluster ID.",
	"USER_LOCKED_OUT":                                "The kmsuser crypto user is locked out after too many failed logins. A crypto officer must change its password; then edit the key store's password and connect.",
	"USER_LOGGED_IN":                                 "The kmsuser crypto user is logged in to the cluster elsewhere, so keyhold cannot rotate its password. Log kmsuser out of the cluster (and edit the key store's password if it was changed), then connect.",
	"USER_NOT_FOUND":                                 "The cluster has no kmsuser crypto user. Create the kmsuser crypto user (keyhold hsm create-user), edit the key store's password to match, then connect.",
	"XKS_PROXY_ACCESS_DENIED":                        "The XKS proxy's authorization denied keyhold's requests. Check the proxy's authorization rules for this key store.",
	"XKS_PROXY_INVALID_CONFIGURATION":                "The XKS proxy configuration is wrong; check the proxy URI path.",
	"XKS_PROXY_INVALID_RESPONSE":                     "keyhold could not parse the XKS proxy's answer. Check the proxy's logs.",
	"XKS_PROXY_INVALID_TLS_CONFIGURATION":            "The XKS proxy's TLS is not acceptable: it must offer TLS 1.2 or 1.3 with an unexpired certificate for its host name, issued by a trusted CA.",
	"XKS_PROXY_NOT_REACHABLE":                        "keyhold cannot reach the XKS proxy, or the proxy reports that its external key manager is unavailable.",
	"XKS_PROXY_TIMED_OUT":                            "The XKS proxy did not answer in time. Check the proxy's and the external key manager's latency.",
	"XKS_VPC_ENDPOINT_SERVICE_INVALID_CONFIGURATION": "The VPC endpoint service does not meet the requirements for an external key store (a load balancer in at least two Availability Zones, keyhold allowed as a principal, no acceptance required, a verified private DNS name).",
	"XKS_VPC_ENDPOINT_SERVICE_NOT_FOUND":             "No VPC endpoint service has the configured name, or keyhold has no permission to use it.",
}
