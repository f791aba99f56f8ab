// Package config loads qsfs.toml, the one configuration file of qsfs: every
// zstor key, in the 0-stor_v2 format that qss/zstor/config reads (shards,
// [encryption], [compression], [meta], [[groups]]), plus a [qsfs] table for
// the local side (where the zdb files live, the cache cap, the RPO, the web
// interface).
//
// The zstor part is validated by qss/zstor/config itself, so a qsfs.toml's
// zstor keys mean exactly what they mean to zstor; this package adds the
// [qsfs] table, refuses the zstor daemon keys that qsfs replaces, and gives
// every error the line of its key. Loading is strict: an unknown key anywhere
// is an error naming the key and line.
//
// The keys are documented in docs/qsfs.md ("Configuration").
package config

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"

	zconfig "qss/zstor/config"
)

// Table is the name of qsfs's own top-level table.
const Table = "qsfs"

// Defaults and limits of the [qsfs] keys.
const (
	DefaultRPO               = 60 * time.Second
	MinRPO                   = time.Second
	DefaultDataFileSize      = 64 << 20
	MinDataFileSize          = 1 << 20
	MaxDataFileSize          = 4<<30 - 1 // zdb data file offsets are 32-bit
	DefaultUploadConcurrency = 2
	MaxUploadConcurrency     = 64
	DefaultGCGrace           = 24 * time.Hour
	DefaultWriteWait         = 30 * time.Second
)

// Config is a loaded, validated qsfs.toml.
type Config struct {
	// File is the path the config was loaded from ("" for Parse).
	File string
	// Zstor is the zstor part, as qss/zstor/config loaded it.
	Zstor *zconfig.Config

	// Path is the absolute local directory for the zdb files and qsfs's
	// state ([qsfs] path; a relative path is taken relative to the config
	// file's directory).
	Path string
	// CacheSize caps the local disk use of the zdb files, in bytes.
	CacheSize int64
	// RPO is the longest data written may stay local only.
	RPO time.Duration
	// Web is the web interface's listen address ("" for none).
	Web string
	// WebTLSCert and WebTLSKey are absolute paths of the web interface's
	// certificate and key (both "" for plain HTTP, loopback only).
	WebTLSCert, WebTLSKey string
	// DataFileSize is the size at which zdb closes a data file and opens
	// the next; each closed file is uploaded whole.
	DataFileSize int64
	// UploadConcurrency is how many files are stored through zstor at
	// once.
	UploadConcurrency int
	// GCGrace is how long a remote object no index refers to any more is
	// kept before it is deleted, so an older index can still be restored.
	GCGrace time.Duration
	// WriteWait is how long a write waits for cache space (backpressure,
	// while the backends cannot take what fills the cache) before it fails
	// with ENOSPC.
	WriteWait time.Duration
	// Metrics is the Prometheus listen address ("" for none).
	Metrics string
}

// Sentinels, shared with qss/zstor/config so that errors.Is works on both
// kinds of error a qsfs.toml can give.
var (
	ErrSyntax     = zconfig.ErrSyntax
	ErrUnknownKey = zconfig.ErrUnknownKey
	ErrInvalid    = zconfig.ErrInvalid
)

// Error is a problem with the [qsfs] table or with a zstor key that qsfs
// refuses. Problems with the zstor keys are *zconfig.Error, unchanged except
// that they get the line of their key.
type Error struct {
	File string // the file's path; "" for Parse
	Line int    // 1-based line, 0 when the key is not in the file
	Key  string // full dotted key
	Msg  string // what is wrong
	Err  error  // ErrUnknownKey or ErrInvalid
}

func (e *Error) Error() string {
	s := "qsfs config"
	if e.File != "" {
		s += " " + e.File
	}
	if e.Line > 0 {
		s += fmt.Sprintf(" line %d", e.Line)
	}
	return s + ": " + e.Key + ": " + e.Msg
}

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Err }

// Load reads and validates the config file at path. Relative paths in it
// (path, web_tls_cert, web_tls_key, passphrase_file) are taken relative to
// the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("qsfs config: %w", err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("qsfs config %s: %w", path, err)
	}
	c, err := Parse(data, dir)
	if err != nil {
		var qe *Error
		var ze *zconfig.Error
		switch {
		case errors.As(err, &qe):
			qe.File = path
		case errors.As(err, &ze):
			ze.File = path
		}
		return nil, err
	}
	c.File = path
	return c, nil
}

// Parse validates a config given as TOML text. Relative paths in it are
// taken relative to dir ("" for the working directory).
func Parse(data []byte, dir string) (*Config, error) {
	lines := indexKeys(data)
	zc, err := zconfig.ParseClaiming(data, dir, Table)
	if err != nil {
		var ze *zconfig.Error
		if errors.As(err, &ze) && ze.Line == 0 && ze.Key != "" {
			ze.Line = lines.lineOf(ze.Key)
		}
		return nil, err
	}
	if err := refuseDaemonKeys(lines); err != nil {
		return nil, err
	}
	raw, err := decodeQsfs(data)
	if err != nil {
		return nil, err
	}
	c, err := raw.resolve(dir)
	if err != nil {
		var qe *Error
		if errors.As(err, &qe) && qe.Line == 0 {
			qe.Line = lines.lineOf(qe.Key)
		}
		return nil, err
	}
	c.Zstor = zc
	return c, nil
}

// refused are the zstor keys that configure zstor's daemon around a separate
// zdb and zdbfs. qsfs runs those pieces itself, so each of these is either
// replaced by a [qsfs] key or meaningless; a file that sets one is refused
// rather than half-obeyed.
var refused = []struct{ key, why string }{
	{"root", "qsfs names its objects itself (relative to [qsfs] path); remove root"},
	{"zdb_data_dir_path", "qsfs keeps its zdb files under [qsfs] path; remove zdb_data_dir_path"},
	{"max_zdb_data_dir_size", "the local cap is [qsfs] cache_size; remove max_zdb_data_dir_size"},
	{"zdbfs_mountpoint", "the mount point is given to qsfs on its command line; remove zdbfs_mountpoint"},
	{"socket", "qsfs runs zstor in-process, it has no zstor daemon socket; remove socket"},
	{"pid_file", "qsfs runs zstor in-process, it writes no zstor pid file; remove pid_file"},
	{"prometheus_port", "qsfs serves its metrics (zstor's included) on [qsfs] metrics; remove prometheus_port"},
}

func refuseDaemonKeys(lines keyLines) error {
	for _, r := range refused {
		if lines.has(r.key) {
			return &Error{Line: lines[r.key], Key: r.key, Msg: "a zstor daemon key qsfs does not take: " + r.why, Err: ErrInvalid}
		}
	}
	return nil
}

// rawQsfs is the [qsfs] table as written. Pointers tell "absent" from "zero".
type rawQsfs struct {
	Path              *string `toml:"path"`
	CacheSize         any     `toml:"cache_size"`
	RPO               *string `toml:"rpo"`
	Web               string  `toml:"web"`
	WebTLSCert        string  `toml:"web_tls_cert"`
	WebTLSKey         string  `toml:"web_tls_key"`
	DataFileSize      any     `toml:"data_file_size"`
	UploadConcurrency *int    `toml:"upload_concurrency"`
	GCGrace           *string `toml:"gc_grace"`
	WriteWait         *string `toml:"write_wait"`
	Metrics           string  `toml:"metrics"`
}

// decodeQsfs decodes the [qsfs] table strictly: an unknown key in it is an
// error; the rest of the file is zstor's, already checked.
func decodeQsfs(data []byte) (*rawQsfs, error) {
	var doc struct {
		Qsfs *rawQsfs `toml:"qsfs"`
	}
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(&doc)
	var strict *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case errors.As(err, &strict):
		for _, e := range strict.Errors {
			if k := e.Key(); len(k) > 0 && k[0] == Table {
				line, _ := e.Position()
				return nil, &Error{Line: line, Key: strings.Join(k, "."), Msg: "unknown key (not a qsfs setting)", Err: ErrUnknownKey}
			}
		}
	case errors.As(err, &de):
		line, _ := de.Position()
		return nil, &Error{Line: line, Key: strings.Join(de.Key(), "."), Msg: "wrong type: " + strings.TrimPrefix(de.Error(), "toml: "), Err: ErrInvalid}
	case err != nil:
		return nil, &Error{Key: Table, Msg: err.Error(), Err: ErrSyntax}
	}
	if doc.Qsfs == nil {
		return nil, invalid(Table, "missing: qsfs.toml needs a [qsfs] table with at least path and cache_size")
	}
	return doc.Qsfs, nil
}

func invalid(key, format string, args ...any) *Error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...), Err: ErrInvalid}
}

func (r *rawQsfs) resolve(dir string) (*Config, error) {
	c := &Config{Web: r.Web, Metrics: r.Metrics}
	var err error

	if r.Path == nil || strings.TrimSpace(*r.Path) == "" {
		return nil, invalid("qsfs.path", "missing: the local directory for the zdb files and qsfs state")
	}
	if c.Path, err = absPath(*r.Path, dir); err != nil {
		return nil, invalid("qsfs.path", "%v", err)
	}

	if c.DataFileSize = DefaultDataFileSize; r.DataFileSize != nil {
		if c.DataFileSize, err = ParseSize(r.DataFileSize); err != nil {
			return nil, invalid("qsfs.data_file_size", "%v", err)
		}
		if c.DataFileSize < MinDataFileSize || c.DataFileSize > MaxDataFileSize {
			return nil, invalid("qsfs.data_file_size", "%d bytes, must be %d (1 MiB) .. %d (4 GiB - 1)", c.DataFileSize, MinDataFileSize, MaxDataFileSize)
		}
	}

	if r.CacheSize == nil {
		return nil, invalid("qsfs.cache_size", `missing: the cap on local disk use, e.g. "10G"`)
	}
	if c.CacheSize, err = ParseSize(r.CacheSize); err != nil {
		return nil, invalid("qsfs.cache_size", "%v", err)
	}
	if c.CacheSize < 2*c.DataFileSize {
		return nil, invalid("qsfs.cache_size", "%d bytes is less than two data files (2 × data_file_size = %d): the cache must hold the active file and one closed file", c.CacheSize, 2*c.DataFileSize)
	}

	if c.RPO, err = duration(r.RPO, DefaultRPO); err != nil {
		return nil, invalid("qsfs.rpo", "%v", err)
	}
	if c.RPO < MinRPO {
		return nil, invalid("qsfs.rpo", "%v is too short, must be at least %v", c.RPO, MinRPO)
	}
	if c.GCGrace, err = duration(r.GCGrace, DefaultGCGrace); err != nil {
		return nil, invalid("qsfs.gc_grace", "%v", err)
	}
	if c.GCGrace < 0 {
		return nil, invalid("qsfs.gc_grace", "%v is negative", c.GCGrace)
	}
	if c.WriteWait, err = duration(r.WriteWait, DefaultWriteWait); err != nil {
		return nil, invalid("qsfs.write_wait", "%v", err)
	}
	if c.WriteWait <= 0 {
		return nil, invalid("qsfs.write_wait", "%v must be positive", c.WriteWait)
	}

	c.UploadConcurrency = DefaultUploadConcurrency
	if r.UploadConcurrency != nil {
		c.UploadConcurrency = *r.UploadConcurrency
		if c.UploadConcurrency < 1 || c.UploadConcurrency > MaxUploadConcurrency {
			return nil, invalid("qsfs.upload_concurrency", "is %d, must be 1..%d", c.UploadConcurrency, MaxUploadConcurrency)
		}
	}

	if err := c.resolveWeb(r, dir); err != nil {
		return nil, err
	}
	if c.Metrics != "" {
		if _, err := listenAddr(c.Metrics); err != nil {
			return nil, invalid("qsfs.metrics", "%v", err)
		}
	}
	return c, nil
}

// resolveWeb checks web and its TLS files: plain HTTP only on loopback, so a
// password never crosses a network in clear.
func (c *Config) resolveWeb(r *rawQsfs, dir string) error {
	switch {
	case r.WebTLSCert != "" && r.WebTLSKey == "":
		return invalid("qsfs.web_tls_key", "missing: web_tls_cert is set, web_tls_key must be too")
	case r.WebTLSKey != "" && r.WebTLSCert == "":
		return invalid("qsfs.web_tls_cert", "missing: web_tls_key is set, web_tls_cert must be too")
	case r.WebTLSCert != "" && c.Web == "":
		return invalid("qsfs.web_tls_cert", "set without web (the web interface's listen address)")
	}
	if c.Web == "" {
		return nil
	}
	host, err := listenAddr(c.Web)
	if err != nil {
		return invalid("qsfs.web", "%v", err)
	}
	if r.WebTLSCert == "" {
		if !isLoopback(host) {
			return invalid("qsfs.web", "%q is not a loopback address: serving the web interface beyond this machine needs web_tls_cert and web_tls_key (or listen on 127.0.0.1 / [::1] / localhost)", c.Web)
		}
		return nil
	}
	if c.WebTLSCert, err = absPath(r.WebTLSCert, dir); err != nil {
		return invalid("qsfs.web_tls_cert", "%v", err)
	}
	if c.WebTLSKey, err = absPath(r.WebTLSKey, dir); err != nil {
		return invalid("qsfs.web_tls_key", "%v", err)
	}
	if _, err := tls.LoadX509KeyPair(c.WebTLSCert, c.WebTLSKey); err != nil {
		return invalid("qsfs.web_tls_cert", "with web_tls_key: %v", err)
	}
	return nil
}

// listenAddr checks a "host:port" listen address and returns its host.
func listenAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q is not a listen address host:port: %v", addr, err)
	}
	p, err := netip.ParseAddrPort("0.0.0.0:" + port)
	if err != nil || p.Port() == 0 {
		return "", fmt.Errorf("%q: port %q must be 1..65535", addr, port)
	}
	return host, nil
}

// isLoopback reports whether a listen host is this machine only.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// absPath makes p absolute, relative to dir (or the working directory).
func absPath(p, dir string) (string, error) {
	if !filepath.IsAbs(p) && dir != "" {
		p = filepath.Join(dir, p)
	}
	return filepath.Abs(p)
}

// duration parses an optional Go duration string.
func duration(s *string, def time.Duration) (time.Duration, error) {
	if s == nil {
		return def, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(*s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: want a Go duration such as \"60s\", \"15m\" or \"24h\"", *s)
	}
	return d, nil
}
