package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	zconfig "qss/zstor/config"
)

// zstorPart is a valid zstor config; the tests append a [qsfs] table.
const zstorPart = `minimal_shards = 2
expected_shards = 3

[encryption]
algorithm = "AES"
key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

[compression]
algorithm = "snappy"

[meta]
type = "zdb"

[meta.config]
prefix = "p"

[[meta.config.backends]]
address = "127.0.0.1:9900"
namespace = "meta"

[[groups]]
[[groups.backends]]
address = "127.0.0.1:9901"
namespace = "a"
password = "pw"

[[groups]]
[[groups.backends]]
address = "[::1]:9902"

[[groups.backends]]
address = "127.0.0.1:9903"
`

// minimal is the smallest valid qsfs.toml: the required keys only.
const minimal = zstorPart + `
[qsfs]
path = "data"
cache_size = "10G"
`

// lineOf returns the 1-based line of the first line of doc containing s.
func lineOf(t *testing.T, doc, s string) int {
	t.Helper()
	for i, l := range strings.Split(doc, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("no %q in the document", s)
	return 0
}

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	c, err := Parse([]byte(minimal), dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Zstor == nil || c.Zstor.MinimalShards != 2 || len(c.Zstor.Backends()) != 3 {
		t.Fatalf("zstor part %+v", c.Zstor)
	}
	want := Config{
		Path:              filepath.Join(dir, "data"),
		CacheSize:         10 << 30,
		RPO:               60 * time.Second,
		DataFileSize:      64 << 20,
		UploadConcurrency: 2,
		GCGrace:           24 * time.Hour,
		WriteWait:         30 * time.Second,
	}
	got := *c
	got.Zstor = nil
	if got != want {
		t.Errorf("defaults\n got %+v\nwant %+v", got, want)
	}
}

func TestEveryKey(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	doc := zstorPart + `
[qsfs]
path = "/srv/qsfs"
cache_size = 1073741824
rpo = "15m"
web = "0.0.0.0:8443"
web_tls_cert = "` + filepath.Base(cert) + `"
web_tls_key = "` + key + `"
data_file_size = "1.5MiB"
upload_concurrency = 8
gc_grace = "168h"
write_wait = "5s"
metrics = "0.0.0.0:9100"
`
	path := filepath.Join(dir, "qsfs.toml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		File:              path,
		Path:              "/srv/qsfs",
		CacheSize:         1 << 30,
		RPO:               15 * time.Minute,
		Web:               "0.0.0.0:8443",
		WebTLSCert:        cert, // relative: to the config file's directory
		WebTLSKey:         key,
		DataFileSize:      3 << 19,
		UploadConcurrency: 8,
		GCGrace:           168 * time.Hour,
		WriteWait:         5 * time.Second,
		Metrics:           "0.0.0.0:9100",
	}
	got := *c
	got.Zstor = nil
	if got != want {
		t.Errorf("every key\n got %+v\nwant %+v", got, want)
	}
}

// Relative paths are relative to the config file, not the working directory.
func TestRelativePath(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "etc")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(minimal, `path = "data"`, `path = "../var/qsfs"`, 1)
	if err := os.WriteFile(filepath.Join(sub, "qsfs.toml"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir()) // somewhere else
	c, err := Load(filepath.Join(sub, "qsfs.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "var", "qsfs"); c.Path != want {
		t.Errorf("path %q, want %q", c.Path, want)
	}
	// The same from a relative config path.
	t.Chdir(dir)
	if c, err = Load("etc/qsfs.toml"); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "var", "qsfs"); c.Path != want {
		t.Errorf("path via a relative config path %q, want %q", c.Path, want)
	}
}

func TestSizes(t *testing.T) {
	good := map[string]int64{
		`"10G"`:       10 << 30,
		`"10g"`:       10 << 30,
		`"10GiB"`:     10 << 30,
		`"10Gi"`:      10 << 30,
		`"10GB"`:      10e9,
		`"512M"`:      512 << 20,
		`"512 MiB"`:   512 << 20,
		`"1.5GiB"`:    3 << 29,
		`"2T"`:        2 << 40,
		`"2TB"`:       2e12,
		`"268435456"`: 256 << 20,
		`"129M"`:      129 << 20,
		`134217728`:   128 << 20,
	}
	for v, want := range good {
		doc := strings.Replace(minimal, `cache_size = "10G"`, "cache_size = "+v, 1)
		c, err := Parse([]byte(doc), "/")
		if err != nil {
			t.Errorf("cache_size = %s: %v", v, err)
			continue
		}
		if c.CacheSize != want {
			t.Errorf("cache_size = %s: %d, want %d", v, c.CacheSize, want)
		}
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	q := func(body string) string { return zstorPart + "\n[qsfs]\n" + body }
	const req = "path = \"d\"\ncache_size = \"10G\"\n"
	cases := []struct {
		name, doc string
		key       string
		at        string // text on the line the error must name ("" for no line)
		sentinel  error
		msg       string
	}{
		// Unknown keys, everywhere.
		{"unknown top level", "cache = 1\n" + minimal, "cache", "cache = 1", ErrUnknownKey, "unknown key"},
		{"unknown in qsfs", q(req + "rpo_seconds = 60\n"), "qsfs.rpo_seconds", "rpo_seconds", ErrUnknownKey, "not a qsfs setting"},
		{"unknown qsfs subtable", q(req + "[qsfs.web]\nport = 1\n"), "qsfs.web", "[qsfs.web]", ErrInvalid, "wrong type"},
		{"unknown in meta.config", strings.Replace(minimal, `prefix = "p"`, "prefix = \"p\"\nprefx = \"q\"", 1), "meta.config.prefx", "prefx", ErrUnknownKey, "unknown key"},
		{"unknown in groups", strings.Replace(minimal, `password = "pw"`, "password = \"pw\"\npasswd = \"x\"", 1), "groups.backends.passwd", "passwd", ErrUnknownKey, "unknown key"},

		// Missing.
		{"no qsfs table", zstorPart, "qsfs", "", ErrInvalid, "missing"},
		{"no path", q(`cache_size = "10G"` + "\n"), "qsfs.path", "[qsfs]", ErrInvalid, "missing"},
		{"empty path", q("path = \"\"\ncache_size = \"10G\"\n"), "qsfs.path", `path = ""`, ErrInvalid, "missing"},
		{"no cache_size", q(`path = "d"` + "\n"), "qsfs.cache_size", "[qsfs]", ErrInvalid, "missing"},

		// Bad values: one error naming the key and its line.
		{"cache_size zero", q("path = \"d\"\ncache_size = 0\n"), "qsfs.cache_size", "cache_size", ErrInvalid, "at least 1 byte"},
		{"cache_size negative", q("path = \"d\"\ncache_size = -5\n"), "qsfs.cache_size", "cache_size", ErrInvalid, "at least 1 byte"},
		{"cache_size unit", q("path = \"d\"\ncache_size = \"10X\"\n"), "qsfs.cache_size", "cache_size", ErrInvalid, "not a size"},
		{"cache_size text", q("path = \"d\"\ncache_size = \"lots\"\n"), "qsfs.cache_size", "cache_size", ErrInvalid, "not a size"},
		{"cache_size float", q("path = \"d\"\ncache_size = 1.5\n"), "qsfs.cache_size", "cache_size", ErrInvalid, "not a size"},
		{"cache_size huge", q("path = \"d\"\ncache_size = \"99999999999T\"\n"), "qsfs.cache_size", "cache_size", ErrInvalid, "too large"},
		{"cache below two files", q("path = \"d\"\ncache_size = \"100M\"\n"), "qsfs.cache_size", "cache_size", ErrInvalid, "two data files"},
		{"path wrong type", q("path = 1\ncache_size = \"10G\"\n"), "qsfs.path", "path = 1", ErrInvalid, "wrong type"},
		{"rpo bad", q(req + "rpo = \"soon\"\n"), "qsfs.rpo", "rpo", ErrInvalid, "not a duration"},
		{"rpo integer", q(req + "rpo = 60\n"), "qsfs.rpo", "rpo", ErrInvalid, "wrong type"},
		{"rpo short", q(req + "rpo = \"500ms\"\n"), "qsfs.rpo", "rpo", ErrInvalid, "at least 1s"},
		{"gc_grace bad", q(req + "gc_grace = \"1d\"\n"), "qsfs.gc_grace", "gc_grace", ErrInvalid, "not a duration"},
		{"gc_grace negative", q(req + "gc_grace = \"-1h\"\n"), "qsfs.gc_grace", "gc_grace", ErrInvalid, "negative"},
		{"write_wait bad", q(req + "write_wait = \"long\"\n"), "qsfs.write_wait", "write_wait", ErrInvalid, "not a duration"},
		{"write_wait zero", q(req + "write_wait = \"0s\"\n"), "qsfs.write_wait", "write_wait", ErrInvalid, "positive"},
		{"data_file_size small", q(req + "data_file_size = \"512K\"\n"), "qsfs.data_file_size", "data_file_size", ErrInvalid, "must be"},
		{"data_file_size 4G", q(req + "data_file_size = \"4G\"\n"), "qsfs.data_file_size", "data_file_size", ErrInvalid, "must be"},
		{"data_file_size bad", q(req + "data_file_size = \"big\"\n"), "qsfs.data_file_size", "data_file_size", ErrInvalid, "not a size"},
		{"upload_concurrency 0", q(req + "upload_concurrency = 0\n"), "qsfs.upload_concurrency", "upload_concurrency", ErrInvalid, "1..64"},
		{"upload_concurrency big", q(req + "upload_concurrency = 1000\n"), "qsfs.upload_concurrency", "upload_concurrency", ErrInvalid, "1..64"},
		{"web no port", q(req + "web = \"127.0.0.1\"\n"), "qsfs.web", "web =", ErrInvalid, "listen address"},
		{"web port 0", q(req + "web = \"127.0.0.1:0\"\n"), "qsfs.web", "web =", ErrInvalid, "1..65535"},
		{"web port text", q(req + "web = \"127.0.0.1:http\"\n"), "qsfs.web", "web =", ErrInvalid, "1..65535"},
		{"web all interfaces", q(req + "web = \":8080\"\n"), "qsfs.web", "web =", ErrInvalid, "not a loopback"},
		{"web public", q(req + "web = \"0.0.0.0:8080\"\n"), "qsfs.web", "web =", ErrInvalid, "not a loopback"},
		{"web hostname", q(req + "web = \"nas.example.com:8080\"\n"), "qsfs.web", "web =", ErrInvalid, "not a loopback"},
		{"tls cert alone", q(req + "web = \"0.0.0.0:8443\"\nweb_tls_cert = \"" + cert + "\"\n"), "qsfs.web_tls_key", "[qsfs]", ErrInvalid, "missing"},
		{"tls key alone", q(req + "web = \"0.0.0.0:8443\"\nweb_tls_key = \"" + key + "\"\n"), "qsfs.web_tls_cert", "[qsfs]", ErrInvalid, "missing"},
		{"tls without web", q(req + "web_tls_cert = \"" + cert + "\"\nweb_tls_key = \"" + key + "\"\n"), "qsfs.web_tls_cert", "web_tls_cert", ErrInvalid, "without web"},
		{"tls files missing", q(req + "web = \"0.0.0.0:8443\"\nweb_tls_cert = \"no.pem\"\nweb_tls_key = \"no.key\"\n"), "qsfs.web_tls_cert", "web_tls_cert", ErrInvalid, "no such file"},
		{"tls key mismatch", q(req + "web = \"0.0.0.0:8443\"\nweb_tls_cert = \"" + cert + "\"\nweb_tls_key = \"" + cert + "\"\n"), "qsfs.web_tls_cert", "web_tls_cert", ErrInvalid, "web_tls_key"},
		{"metrics bad", q(req + "metrics = \"9100\"\n"), "qsfs.metrics", "metrics", ErrInvalid, "listen address"},

		// zstor daemon keys qsfs refuses.
		{"root", "root = \"/\"\n" + minimal, "root", "root", ErrInvalid, "remove root"},
		{"empty root", "root = \"\"\n" + minimal, "root", "root", ErrInvalid, "remove root"},
		{"zdb_data_dir_path", "zdb_data_dir_path = \"/d\"\n" + minimal, "zdb_data_dir_path", "zdb_data_dir_path", ErrInvalid, "[qsfs] path"},
		{"max_zdb_data_dir_size", "max_zdb_data_dir_size = 100\n" + minimal, "max_zdb_data_dir_size", "max_zdb", ErrInvalid, "cache_size"},
		{"zdbfs_mountpoint", "zdbfs_mountpoint = \"/mnt\"\n" + minimal, "zdbfs_mountpoint", "zdbfs_mountpoint", ErrInvalid, "command line"},
		{"socket", "socket = \"/tmp/z.sock\"\n" + minimal, "socket", "socket", ErrInvalid, "socket"},
		{"pid_file", "pid_file = \"/tmp/z.pid\"\n" + minimal, "pid_file", "pid_file", ErrInvalid, "pid"},
		{"prometheus_port", "prometheus_port = 9200\n" + minimal, "prometheus_port", "prometheus_port", ErrInvalid, "metrics"},

		// zstor's own checks, with the line of their key added.
		{"zstor bad value", strings.Replace(minimal, `key = "0001`, `key = "zz01`, 1), "encryption.key", `key = "zz01`, ErrInvalid, "encryption.key"},
		{"zstor bad address", strings.Replace(minimal, `address = "127.0.0.1:9903"`, `address = "127.0.0.1"`, 1), "groups[1].backends[1].address", `address = "127.0.0.1"`, ErrInvalid, "address"},
		{"zstor missing key", strings.Replace(minimal, "minimal_shards = 2\n", "", 1), "minimal_shards", "", ErrInvalid, "missing"},
		{"syntax", minimal + "cache_size = \"1G\"\n", "", "cache_size = \"1G\"", ErrSyntax, "already defined"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), dir)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, tc.sentinel) {
				t.Errorf("error %v is not %v", err, tc.sentinel)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
			var key string
			var line int
			var qe *Error
			var ze *zconfig.Error
			switch {
			case errors.As(err, &qe):
				key, line = qe.Key, qe.Line
			case errors.As(err, &ze):
				key, line = ze.Key, ze.Line
			default:
				t.Fatalf("error %T %v is neither *Error nor *zconfig.Error", err, err)
			}
			if tc.key != "" && key != tc.key {
				t.Errorf("key %q, want %q (%v)", key, tc.key, err)
			}
			want := 0
			if tc.at != "" {
				want = lineOf(t, tc.doc, tc.at)
			}
			if line != want {
				t.Errorf("line %d, want %d (%v)", line, want, err)
			}
		})
	}
}

// Load names the file in errors, for both kinds of error.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "qsfs.toml")
	for _, doc := range []string{
		strings.Replace(minimal, `"10G"`, `"ten"`, 1),
		strings.Replace(minimal, "minimal_shards = 2", "minimal_shards = 0", 1),
	} {
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path+" line ") {
			t.Errorf("Load error %v does not name the file and line", err)
		}
	}
	if _, err := Load(filepath.Join(dir, "none.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestLoopbackWeb(t *testing.T) {
	for _, w := range []string{"127.0.0.1:8080", "127.1.2.3:80", "[::1]:8080", "localhost:8080", "LOCALHOST:1"} {
		doc := minimal + "web = \"" + w + "\"\n"
		c, err := Parse([]byte(doc), "/")
		if err != nil {
			t.Errorf("web = %q: %v", w, err)
		} else if c.Web != w {
			t.Errorf("web = %q: got %q", w, c.Web)
		}
	}
}

// writeCert writes a self-signed certificate and its key into dir.
func writeCert(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "qsfs test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}
