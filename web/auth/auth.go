// Package auth is the web interface's authentication: logins with a user
// name and password, server-side sessions carried by a cookie, the CSRF
// check of every state-changing request, rate limiting of password
// attempts, and HTTP Basic authentication for WebDAV clients.
//
// Sessions live in memory only: a restart of the server logs everyone
// out. That is deliberate: nothing secret is ever written to disk, and a
// login costs one password. The cookie carries 32 random bytes; the
// server keeps only their SHA-256, so a dump of its memory holds no
// usable cookie.
//
// Client addresses are taken from the connection (RemoteAddr), never
// from X-Forwarded-For: the server is meant to face clients directly.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Verifier checks a user's password. qss/qsfs/users.(*Store) implements
// it; Verify answers (false, nil) for a wrong password or an unknown user
// and an error only when it cannot tell.
type Verifier interface {
	Verify(name, password string) (bool, error)
}

// Checker is a Verifier that can also tell, cheaply, whether a user still
// exists and when its password was last set (qsfs/users.Store does). With
// it, a session or a remembered Basic login ends within CheckEvery of its
// user being removed or its password changed, even by another process
// (`qsfs user remove`, `qsfs user passwd`).
type Checker interface {
	Check(name string) (exists bool, passwordSet time.Time, err error)
}

// CheckEvery is how often a session's user is checked (Checker).
const CheckEvery = 5 * time.Second

// Options configure an Auth. Users is required; zero values of the others
// take the defaults given.
type Options struct {
	// Users checks passwords.
	Users Verifier
	// Secure marks the session cookie Secure: set it when the server is
	// reached over TLS.
	Secure bool
	// IdleTimeout ends a session not used for that long (default 12 h).
	IdleTimeout time.Duration
	// MaxAge ends a session that long after the login, used or not
	// (default 7 days).
	MaxAge time.Duration
	// Logger receives failed logins and errors (default slog.Default()).
	// Passwords and tokens are never logged.
	Logger *slog.Logger
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
}

// Defaults of Options.
const (
	DefaultIdleTimeout = 12 * time.Hour
	DefaultMaxAge      = 7 * 24 * time.Hour
)

// CookieName is the session cookie's name.
const CookieName = "qsfs_session"

// CSRFHeader is the header that must carry the session's CSRF token on
// every request with an unsafe method.
const CSRFHeader = "X-CSRF-Token"

// basicCacheTTL is how long a successful Basic verification is reused.
// WebDAV clients send the password with every request; without the cache
// each would cost an argon2id hash. A changed password therefore stops
// working for Basic clients up to this long after the change (RevokeUser
// ends that at once).
const basicCacheTTL = time.Minute

// maxLoginBody bounds a login request's body.
const maxLoginBody = 4 << 10

// maxUserLen is the longest user name checked (users.MaxNameLen).
const maxUserLen = 64

// maxAgentLen bounds the User-Agent kept with a session.
const maxAgentLen = 256

// Auth holds the sessions, the rate limiters and the Basic cache. Its
// methods are safe for concurrent use.
type Auth struct {
	users  Verifier
	secure bool
	idle   time.Duration
	maxAge time.Duration
	log    *slog.Logger
	now    func() time.Time
	limits *limiter

	mu       sync.Mutex
	sessions map[[32]byte]*session // by sha256(token)
	byID     map[string][32]byte   // public id → key of sessions

	basicMu sync.Mutex
	basic   map[string]basicEntry // by user name
}

// session is one login. The token itself is not kept.
type session struct {
	id       string
	user     string
	csrf     string
	created  time.Time
	lastSeen time.Time
	remote   string
	agent    string
	checked  time.Time // last Checker call
}

type basicEntry struct {
	sum     [32]byte // sha256(name, NUL, password)
	expires time.Time
	checked time.Time // last Checker call
}

// New returns an Auth for o.
func New(o Options) *Auth {
	a := &Auth{
		users:    o.Users,
		secure:   o.Secure,
		idle:     o.IdleTimeout,
		maxAge:   o.MaxAge,
		log:      o.Logger,
		now:      o.Now,
		sessions: map[[32]byte]*session{},
		byID:     map[string][32]byte{},
		basic:    map[string]basicEntry{},
	}
	if a.idle <= 0 {
		a.idle = DefaultIdleTimeout
	}
	if a.maxAge <= 0 {
		a.maxAge = DefaultMaxAge
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.limits = newLimiter(a.now)
	return a
}

type ctxKey struct{}

// ctxValue is what Require and Basic put in the request's context.
type ctxValue struct {
	user string
	sess *session // nil for Basic
}

// User is the authenticated user of a request that went through Require
// or Basic; "" otherwise.
func User(r *http.Request) string {
	if v, ok := r.Context().Value(ctxKey{}).(ctxValue); ok {
		return v.user
	}
	return ""
}

func withUser(r *http.Request, v ctxValue) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), ctxKey{}, v))
}

func currentSession(r *http.Request) *session {
	if v, ok := r.Context().Value(ctxKey{}).(ctxValue); ok {
		return v.sess
	}
	return nil
}

// Require passes to next only requests with a valid session cookie (else
// 401) and, for methods other than GET, HEAD and OPTIONS, a CSRFHeader
// equal to the session's CSRF token (else 403, and next is not called).
// User(r) names the session's user inside next.
func (a *Auth) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := a.session(r)
		if s == nil {
			writeError(w, http.StatusUnauthorized, "not logged in, or the session has expired: log in again")
			return
		}
		if !safeMethod(r.Method) {
			got := r.Header.Get(CSRFHeader)
			if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
				writeError(w, http.StatusForbidden, "missing or wrong "+CSRFHeader+" header: reload the page")
				return
			}
		}
		next.ServeHTTP(w, withUser(r, ctxValue{user: s.user, sess: s}))
	})
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// session returns a copy of the request's live session and marks it used;
// nil when there is none or it has expired (an expired one is deleted).
func (a *Auth) session(r *http.Request) *session {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	key := sha256.Sum256([]byte(c.Value))
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.sessions[key]
	if s == nil {
		return nil
	}
	if a.expired(s, now) {
		a.deleteLocked(key)
		return nil
	}
	s.lastSeen = now
	if !a.stillValid(s.user, s.created, &s.checked, now) {
		a.deleteLocked(key)
		return nil
	}
	cp := *s
	return &cp
}

// stillValid asks the Checker, at most every CheckEvery (tracked in
// *checked), whether user exists and set its password before since. A
// failure to ask keeps the login: a users file being rewritten must not
// log everyone out.
func (a *Auth) stillValid(user string, since time.Time, checked *time.Time, now time.Time) bool {
	c, ok := a.users.(Checker)
	if !ok || now.Sub(*checked) < CheckEvery {
		return true
	}
	*checked = now
	exists, set, err := c.Check(user)
	if err != nil {
		a.log.Warn("checking a logged-in user", "user", user, "err", err)
		return true
	}
	if !exists || set.After(since) {
		a.log.Info("login ended: the user was removed or its password changed", "user", user)
		return false
	}
	return true
}

func (a *Auth) expired(s *session, now time.Time) bool {
	return !now.Before(s.lastSeen.Add(a.idle)) || !now.Before(s.created.Add(a.maxAge))
}

// expires is when s ends if it is not used again.
func (a *Auth) expires(s *session) time.Time {
	idle, abs := s.lastSeen.Add(a.idle), s.created.Add(a.maxAge)
	if idle.Before(abs) {
		return idle.UTC()
	}
	return abs.UTC()
}

func (a *Auth) deleteLocked(key [32]byte) {
	if s := a.sessions[key]; s != nil {
		delete(a.byID, s.id)
		delete(a.sessions, key)
	}
}

// sweepLocked deletes every expired session.
func (a *Auth) sweepLocked(now time.Time) {
	for k, s := range a.sessions {
		if a.expired(s, now) {
			a.deleteLocked(k)
		}
	}
}

// RevokeUser ends every session of name and forgets its cached Basic
// verification: call it when a user is removed or its password changes.
func (a *Auth) RevokeUser(name string) {
	a.mu.Lock()
	for k, s := range a.sessions {
		if s.user == name {
			a.deleteLocked(k)
		}
	}
	a.mu.Unlock()
	a.basicMu.Lock()
	delete(a.basic, name)
	a.basicMu.Unlock()
}

// newSession creates a session for user and returns it with its token.
func (a *Auth) newSession(r *http.Request, user string) (*session, string) {
	token := randomString(32)
	now := a.now()
	agent := r.UserAgent()
	if len(agent) > maxAgentLen {
		agent = agent[:maxAgentLen]
	}
	s := &session{
		id:       randomString(16),
		user:     user,
		csrf:     randomString(32),
		created:  now,
		lastSeen: now,
		remote:   clientIP(r),
		agent:    agent,
		checked:  now,
	}
	key := sha256.Sum256([]byte(token))
	a.mu.Lock()
	a.sweepLocked(now)
	a.sessions[key] = s
	a.byID[s.id] = key
	a.mu.Unlock()
	return s, token
}

// randomString is n random bytes in unpadded base64url. crypto/rand.Read
// never fails (it panics if the system's source is broken).
func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// clientIP is the IP address of the request's peer.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func isLoopback(r *http.Request) bool {
	ip := net.ParseIP(clientIP(r))
	return ip != nil && ip.IsLoopback()
}

// writeError answers {"error": msg} with code.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, struct {
		Error string `json:"error"`
	}{msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
