package share

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"qss/web/files"
	"qss/web/fsys"
)

// MaxPassword is the longest password accepted, in bytes.
const MaxPassword = 1024

// maxBody bounds the JSON bodies the routes read.
const maxBody = 64 << 10

// Options configure an API.
type Options struct {
	// Logger receives the links created and revoked, and errors
	// (default slog.Default()).
	Logger *slog.Logger
	// User names the logged-in user of a request to Routes (the server
	// wraps them with session auth); "" is answered 401. Nil: every
	// link belongs to "".
	User func(*http.Request) string
	// Secure marks the unlock cookie Secure (the server runs TLS).
	Secure bool
}

// API serves the links of a Store over the tree f.
type API struct {
	st   *Store
	fs   fsys.FS
	opts Options
	log  *slog.Logger
	now  func() time.Time

	// Wrong-password limits, per link and per client IP.
	byLink, byIP *limiters
	// hashing bounds the argon2id hashes running at once (each takes
	// argonMemory and a core for tens of milliseconds).
	hashing chan struct{}
}

// NewAPI returns the routes of st's links over f.
func NewAPI(st *Store, f fsys.FS, opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &API{
		st: st, fs: f, opts: opts, log: opts.Logger, now: time.Now,
		byLink:  newLimiters(rate.Every(6*time.Second), 10),
		byIP:    newLimiters(rate.Every(3*time.Second), 20),
		hashing: make(chan struct{}, 2),
	}
}

// ShareJSON is a link as the owner's API returns it.
type ShareJSON struct {
	ID          string     `json:"id"`
	Path        string     `json:"path"` // display path
	Kind        string     `json:"kind"`
	URL         string     `json:"url"` // "/s/<id>", the share page
	Expires     *time.Time `json:"expires"`
	HasPassword bool       `json:"has_password"`
	Created     time.Time  `json:"created"`
	Owner       string     `json:"owner"`
}

func toJSON(sh Share) ShareJSON {
	out := ShareJSON{ID: sh.ID, Path: fsys.Display(sh.Path), Kind: sh.Kind, URL: "/s/" + sh.ID,
		HasPassword: sh.Password != nil, Created: sh.Created.UTC(), Owner: sh.Owner}
	if !sh.Expires.IsZero() {
		e := sh.Expires.UTC()
		out.Expires = &e
	}
	return out
}

// Routes serves, for the logged-in user: POST and GET /api/shares,
// DELETE /api/shares/{id}.
func (a *API) Routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/shares", a.withUser(a.create))
	mux.HandleFunc("GET /api/shares", a.withUser(a.list))
	mux.HandleFunc("DELETE /api/shares/{id}", a.withUser(a.revoke))
	return mux
}

func (a *API) withUser(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		user := ""
		if a.opts.User != nil {
			if user = a.opts.User(r); user == "" {
				files.WriteJSONError(w, http.StatusUnauthorized, "log in first")
				return
			}
		}
		h(w, r, user)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// readJSON decodes the request's JSON body into v (at most maxBody).
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(ct) != "application/json" {
		files.WriteJSONError(w, http.StatusBadRequest, "the body must be JSON (Content-Type: application/json)")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			files.WriteJSONError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes", maxBody))
			return false
		}
		files.WriteJSONError(w, http.StatusBadRequest, "bad JSON body: "+err.Error())
		return false
	}
	return true
}

type createRequest struct {
	Path     string     `json:"path"`
	Password string     `json:"password"`
	Expires  *time.Time `json:"expires"`
}

func (a *API) create(w http.ResponseWriter, r *http.Request, user string) {
	var req createRequest
	if !readJSON(w, r, &req) {
		return
	}
	name, err := fsys.Clean(req.Path)
	if err != nil {
		files.WriteError(w, err)
		return
	}
	if len(req.Password) > MaxPassword {
		files.WriteJSONError(w, http.StatusBadRequest, fmt.Sprintf("the password is over %d bytes", MaxPassword))
		return
	}
	sh := Share{Path: name, Owner: user}
	if req.Expires != nil && !req.Expires.IsZero() {
		if !req.Expires.After(a.now()) {
			files.WriteJSONError(w, http.StatusBadRequest, "expires is in the past")
			return
		}
		sh.Expires = req.Expires.UTC()
	}
	st, err := a.fs.Lstat(name)
	if err != nil {
		files.WriteError(w, err)
		return
	}
	switch {
	case st.IsDir():
		sh.Kind = "dir"
	case st.Mode().IsRegular():
		sh.Kind = "file"
	default:
		files.WriteJSONError(w, http.StatusForbidden, "only files and folders can be shared, not links or special files")
		return
	}
	if req.Password != "" {
		a.hashing <- struct{}{}
		sh.Password = HashPassword(req.Password)
		<-a.hashing
	}
	sh, err = a.st.Create(sh)
	if err != nil {
		a.log.Error("share: create", "err", err)
		files.WriteJSONError(w, http.StatusInternalServerError, "could not save the link")
		return
	}
	a.log.Info("share created", "id", sh.ID, "path", fsys.Display(name), "user", user)
	writeJSON(w, http.StatusCreated, toJSON(sh))
}

func (a *API) list(w http.ResponseWriter, r *http.Request, user string) {
	shs, err := a.st.List(user)
	if err != nil {
		a.log.Error("share: list", "err", err)
		files.WriteJSONError(w, http.StatusInternalServerError, "could not read the links")
		return
	}
	out := make([]ShareJSON, 0, len(shs))
	for _, sh := range shs {
		out = append(out, toJSON(sh))
	}
	writeJSON(w, http.StatusOK, struct {
		Shares []ShareJSON `json:"shares"`
	}{out})
}

func (a *API) revoke(w http.ResponseWriter, r *http.Request, user string) {
	id := r.PathValue("id")
	switch err := a.st.Revoke(id, user); {
	case errors.Is(err, ErrNotFound):
		files.WriteJSONError(w, http.StatusNotFound, "you have no such link")
	case err != nil:
		a.log.Error("share: revoke", "id", id, "err", err)
		files.WriteJSONError(w, http.StatusInternalServerError, "could not revoke the link")
	default:
		a.log.Info("share revoked", "id", id, "user", user)
		w.WriteHeader(http.StatusNoContent)
	}
}

// limiters is a rate.Limiter per key, forgetting the keys whose limiter
// is full again, so the map stays small.
type limiters struct {
	mu    sync.Mutex
	m     map[string]*rate.Limiter
	every rate.Limit
	burst int
}

func newLimiters(every rate.Limit, burst int) *limiters {
	return &limiters{m: map[string]*rate.Limiter{}, every: every, burst: burst}
}

// maxLimiters bounds the keys a limiters remembers.
const maxLimiters = 4096

// lookup is key's limiter, created if needed, with l.mu held. Past
// maxLimiters keys, the full ones are forgotten; if none is, newcomers
// share one limiter.
func (l *limiters) lookup(key string, now time.Time) *rate.Limiter {
	if lim := l.m[key]; lim != nil {
		return lim
	}
	if len(l.m) >= maxLimiters {
		for k, v := range l.m {
			if v.TokensAt(now) >= float64(l.burst) {
				delete(l.m, k)
			}
		}
	}
	if len(l.m) >= maxLimiters {
		key = ""
	}
	lim := l.m[key]
	if lim == nil {
		lim = rate.NewLimiter(l.every, l.burst)
		l.m[key] = lim
	}
	return lim
}

// reserve spends one of key's attempts now, or spends nothing and
// returns how long key must wait. The attempt is spent before the
// password is checked, so that concurrent attempts cannot all pass a
// check made before any of them failed; refund gives it back (a right
// password).
func (l *limiters) reserve(key string, now time.Time) (wait time.Duration, refund func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.lookup(key, now).ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, nil
	}
	return 0, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		r.CancelAt(now)
	}
}
