// Package web is qsfs's web interface: the server that puts the file API,
// uploads, share links, the dashboard and WebDAV behind one set of routes
// and one session model, and serves the embedded front end. docs/web.md is
// its contract.
package web

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/gzhttp"

	"qss/web/auth"
	"qss/web/dav"
	"qss/web/files"
	"qss/web/fsys"
	"qss/web/health"
	"qss/web/share"
	"qss/web/ui"
	"qss/web/upload"
)

// Config is what a Server serves and how.
type Config struct {
	// FS is the tree served (qsfs: its mount).
	FS fsys.FS
	// Users verifies logins (qsfs/users.Store).
	Users auth.Verifier
	// StateDir keeps the web's own state (share links: web.db).
	StateDir string
	// Status, when set, feeds the dashboard; without it /api/health
	// answers 404.
	Status health.StatusFunc
	// TLS says the server is reached over TLS (Secure cookies, HSTS).
	TLS bool
	// LoopbackOnly answers only requests whose Host is a loopback name or
	// address (localhost, 127.0.0.1, [::1]): set it when listening on
	// loopback, so that a web page whose name an attacker rebinds to
	// 127.0.0.1 (DNS rebinding) cannot talk to the server as same-origin.
	LoopbackOnly bool
	// MaxUpload is the largest upload accepted (default 64 GiB); Free,
	// when set, the free bytes of the tree (uploads over it are refused).
	MaxUpload int64
	Free      func() (int64, error)
	// Resident, when set, tells whether a file's data is on this machine
	// (the remote-only badge).
	Resident func(name string, st fs.FileInfo) (remote, known bool)
	Logger   *slog.Logger
}

// Server is the web interface's handler and the state behind it.
type Server struct {
	cfg     Config
	log     *slog.Logger
	auth    *auth.Auth
	shares  *share.Store
	uploads *upload.Uploads
	monitor *health.Monitor
	handler http.Handler
	cancel  context.CancelFunc
	done    chan struct{}
}

// New builds the server and starts its background work (the dashboard's
// sampling, expiry of abandoned uploads); Close stops it.
func New(cfg Config) (*Server, error) {
	if cfg.FS == nil || cfg.Users == nil {
		return nil, errors.New("web: FS and Users are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, log: log, done: make(chan struct{})}
	s.auth = auth.New(auth.Options{Users: cfg.Users, Secure: cfg.TLS, Logger: log.With("part", "auth")})
	st, err := share.Open(filepath.Join(cfg.StateDir, "web.db"))
	if err != nil {
		return nil, fmt.Errorf("web: share links: %w", err)
	}
	s.shares = st
	up, err := upload.New(cfg.FS, upload.Options{MaxSize: cfg.MaxUpload, Free: cfg.Free, Logger: log.With("part", "upload"), User: auth.User})
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("web: uploads: %w", err)
	}
	s.uploads = up
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if cfg.Status != nil {
		s.monitor = health.New(cfg.Status, 0, 0)
	}
	go s.background(ctx)
	s.handler = s.routes()
	return s, nil
}

func (s *Server) background(ctx context.Context) {
	defer close(s.done)
	if s.monitor != nil {
		go s.monitor.Run(ctx)
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := s.uploads.Expire(ctx); err != nil {
			s.log.Warn("expire abandoned uploads", "err", err)
		} else if n > 0 {
			s.log.Info("expired abandoned uploads", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close stops the background work and closes the state.
func (s *Server) Close() error {
	s.cancel()
	<-s.done
	return errors.Join(s.uploads.Close(), s.shares.Close())
}

// Handler is the server's root handler.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	cfg := s.cfg
	mux := http.NewServeMux()
	fapi := files.New(cfg.FS, files.Options{Logger: s.log.With("part", "files"), User: auth.User, Resident: cfg.Resident})
	sapi := share.NewAPI(s.shares, cfg.FS, share.Options{Logger: s.log.With("part", "share"), User: auth.User, Secure: cfg.TLS})
	mux.Handle("/api/auth/", s.auth.Routes())
	mux.Handle("/api/files/", compress(s.auth.Require(fapi.Routes())))
	mux.Handle("/api/upload/", s.auth.Require(s.uploads.Handler()))
	mux.Handle("/api/shares", s.auth.Require(sapi.Routes()))
	mux.Handle("/api/shares/", s.auth.Require(sapi.Routes()))
	mux.Handle("/api/public/", sapi.PublicRoutes())
	if s.monitor != nil {
		mux.Handle("/api/health", compress(s.auth.Require(s.monitor)))
	}
	mux.Handle("/api/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		files.WriteJSONError(w, http.StatusNotFound, "no such API route: "+r.URL.Path)
	}))
	mux.Handle("/dav/", s.auth.Basic(dav.New(cfg.FS, dav.Options{Logger: s.log.With("part", "dav")})))
	mux.Handle("/dav", http.RedirectHandler("/dav/", http.StatusMovedPermanently))
	mux.Handle("/", compress(s.app()))
	return s.headers(mux)
}

// compressible are the types compress compresses: the API's JSON and the
// app's code. Never user content (downloads are text/plain or their own
// type, and Range requests must see the bytes as stored), and never the
// auth routes, whose answers carry a secret (BREACH).
var compressible = map[string]bool{
	"application/json": true, "text/javascript": true, "application/javascript": true,
	"text/css": true, "text/html": true, "image/svg+xml": true,
}

// compress gzips (or zstd-compresses, when the client prefers it) the
// compressible answers of h: a 10,000-entry listing is 1.2 MB of JSON.
var compress = func() func(http.Handler) http.HandlerFunc {
	w, err := gzhttp.NewWrapper(gzhttp.ContentTypeFilter(func(ct string) bool {
		ct, _, _ = strings.Cut(ct, ";")
		return compressible[strings.TrimSpace(ct)]
	}))
	if err != nil {
		panic(err) // the options are constants
	}
	return w
}()

// appCSP is the front end's Content-Security-Policy (docs/web.md).
const appCSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; " +
	"media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; " +
	"base-uri 'none'; form-action 'self'"

// headers sets what every answer carries; handlers of user content
// replace the CSP with a stricter one (files.SetSafeHeaders).
func (s *Server) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.LoopbackOnly && !loopbackHost(r.Host) {
			files.WriteJSONError(w, http.StatusMisdirectedRequest,
				"this server answers only to localhost, 127.0.0.1 or [::1]: open it by one of those names")
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Content-Security-Policy", appCSP)
		if s.cfg.TLS {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names this machine's
// loopback: "localhost" or a loopback IP, with or without a port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// IsLoopbackListener reports whether ln listens on a loopback address.
func IsLoopbackListener(ln net.Listener) bool {
	tcp, ok := ln.Addr().(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// app serves the embedded front end: its hashed assets, and index.html
// for "/" and the share pages "/s/<id>".
func (s *Server) app() http.Handler {
	dist, err := fs.Sub(ui.Dist, "dist")
	if err != nil {
		panic(err) // the embed is part of the build
	}
	assets := http.FileServerFS(dist)
	index, _ := fs.ReadFile(dist, "index.html")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := r.URL.Path
		switch {
		case strings.HasPrefix(p, "/assets/") && !strings.HasSuffix(p, "/"): // files only, no listing
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
			assets.ServeHTTP(w, r)
		case p == "/" || p == "/index.html" || strings.HasPrefix(p, "/s/") && !strings.Contains(p[3:], "/"):
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-cache")
			w.Write(index)
		case p == "/favicon.ico":
			w.Header().Set("Cache-Control", "public, max-age=86400")
			http.Redirect(w, r, "/assets/favicon.svg", http.StatusMovedPermanently)
		default:
			http.NotFound(w, r)
		}
	})
}

// Listen opens the web interface's listener on addr, with TLS when cert
// and key are given. Beyond loopback without TLS it logs a warning (qsfs's
// config refuses that case before it gets here).
func Listen(addr, cert, key string, log *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("web: listen on %s: %w", addr, err)
	}
	if cert == "" {
		if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
			log.Warn("the web interface listens beyond loopback without TLS: passwords and files cross the network in clear", "addr", ln.Addr().String())
		}
		return ln, nil
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("web: TLS certificate: %w", err)
	}
	return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}), nil
}

// Serve serves h on ln until ctx ends, then shuts down gracefully (up to
// 5 s for requests in flight).
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		<-errc
		return err
	}
}
