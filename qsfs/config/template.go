package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TemplateOptions are the choices `qsfs init` puts in a new qsfs.toml; an
// empty field takes the default shown.
type TemplateOptions struct {
	// Path is [qsfs] path (default "qsfs-data", next to the config file).
	Path string
	// CacheSize is [qsfs] cache_size (default "10G").
	CacheSize string
	// RPO is [qsfs] rpo (default "60s").
	RPO string
	// Web is [qsfs] web (default "127.0.0.1:8080"); "-" for no web
	// interface (web = ""), as `qsfs init --web -` takes it.
	Web string
	// NoWeb is the same as Web "-".
	NoWeb bool
	// Zstor, when set, is the zstor part of the file (shards, encryption,
	// compression, meta, groups) in place of the placeholder backends —
	// for `qsfs demo`, which has real local backends
	// (internal/localbackends Set.ZstorConfig). It must carry its own keys.
	Zstor string
}

// Template defaults.
const (
	TemplatePath      = "qsfs-data"
	TemplateCacheSize = "10G"
	TemplateRPO       = "60s"
	TemplateWeb       = "127.0.0.1:8080"
)

// NewKey returns a fresh 256-bit key from crypto/rand as 64 hex digits, the
// form [encryption] key takes.
func NewKey() (string, error) {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return "", fmt.Errorf("qsfs config: random key: %w", err)
	}
	return hex.EncodeToString(k[:]), nil
}

// Template returns a commented qsfs.toml: fresh random keys for the data
// ([encryption]) and the metadata ([meta.config.encryption]), six
// placeholder backends to replace with real ones, and the [qsfs] table. The
// result is checked with Parse, so bad options are an error here rather than
// at the first start.
func Template(opts TemplateOptions) ([]byte, error) {
	path := def(opts.Path, TemplatePath)
	cache := def(opts.CacheSize, TemplateCacheSize)
	rpo := def(opts.RPO, TemplateRPO)
	web := def(opts.Web, TemplateWeb)
	if opts.NoWeb || web == "-" {
		web = ""
	}
	var b strings.Builder
	b.WriteString(templateHead)
	if opts.Zstor != "" {
		b.WriteString(strings.TrimRight(opts.Zstor, "\n") + "\n")
	} else {
		dataKey, err := NewKey()
		if err != nil {
			return nil, err
		}
		metaKey, err := NewKey()
		if err != nil {
			return nil, err
		}
		b.WriteString(placeholderZstor(dataKey, metaKey))
	}
	for _, v := range []struct{ name, val string }{{"path", path}, {"cache_size", cache}, {"rpo", rpo}, {"web", web}} {
		if strings.ContainsFunc(v.val, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '"' || r == '\\' }) {
			return nil, fmt.Errorf("qsfs config template: %s %q: control characters, quotes and backslashes are not allowed", v.name, v.val)
		}
	}
	fmt.Fprintf(&b, templateQsfs, path, cache, rpo, web)
	out := []byte(b.String())
	if _, err := Parse(out, ""); err != nil {
		return nil, fmt.Errorf("qsfs config template: %w", err)
	}
	return out, nil
}

func def(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// WriteNew creates the file at path with data, mode 0600 (it holds the
// encryption keys), and fsyncs it and its directory. It never overwrites: an
// existing file is an error and is left as it was.
func WriteNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("qsfs config: %s already exists; not overwriting it (move it away or choose another path)", path)
	}
	if err != nil {
		return fmt.Errorf("qsfs config: %w", err)
	}
	// The umask may have narrowed the mode, never widened it; set it
	// exactly anyway.
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// Ours, half written: remove it so a retry is not refused.
		os.Remove(path)
		return fmt.Errorf("qsfs config: writing %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("qsfs config: fsync directory of %s: %w", path, err)
		}
	}
	return nil
}

const templateHead = `# qsfs.toml — configuration of qsfs, the quantum safe filesystem.
# Keys are documented in docs/qsfs.md ("Configuration").
#
# This file holds the encryption keys: keep it private (mode 0600) and keep a
# copy somewhere safe. Without it, the data on the backends cannot be read.

`

// placeholderZstor is the zstor part with six placeholder backends.
func placeholderZstor(dataKey, metaKey string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# ---- zstor: where and how the files are stored (0-stor_v2 format) ----

# Each chunk is cut into expected_shards shards, any minimal_shards of which
# rebuild it: up to expected_shards - minimal_shards backends may be lost.
minimal_shards = 4
expected_shards = 6

[encryption]
algorithm = "AES"
# The 256-bit data master key, fresh from crypto/rand. Never change it once
# data is stored: the stored data could no longer be read.
key = "%s"

[compression]
algorithm = "snappy"

# The metadata (where each file's shards are) lives on zdb backends too.
[meta]
type = "zdb"

[meta.config]
prefix = "qsfs-meta"

[meta.config.encryption]
algorithm = "AES"
# The metadata master key, separate from the data key.
key = "%s"
`, dataKey, metaKey)
	b.WriteString(`
# Replace the placeholders below with your zdb namespaces: address is
# "host:port" (IPv6: "[addr]:port"); namespace and password are those of a
# namespace you created on that zdb (NSNEW, NSSET password) — in user mode
# for the metadata backends, in sequential mode (NSSET mode seq) for the data
# backends.
`)
	for i := 1; i <= 4; i++ {
		fmt.Fprintf(&b, `
[[meta.config.backends]]
address = "127.0.0.1:%d"
namespace = "qsfs-meta"
password = "CHANGE-ME-meta-%d"
`, 9900+i, i)
	}
	b.WriteString(`
# Data backends, in groups of failure domains (one group here). Use backends
# on different machines: shards of a chunk never share a backend.
[[groups]]
`)
	for i := 1; i <= 6; i++ {
		fmt.Fprintf(&b, `
[[groups.backends]]
address = "127.0.0.1:%d"
namespace = "qsfs-data"
password = "CHANGE-ME-data-%d"
`, 9900+i, i)
	}
	return b.String()
}

const templateQsfs = `
# ---- qsfs: the local side ----
[qsfs]
# Local directory for the zdb files and qsfs's state; relative to this file's
# directory. On a fresh machine, an empty directory is restored from the
# backends.
path = "%s"
# Cap on local disk use: least recently used files already stored on the
# backends are evicted beyond it and fetched back when read. Units K, M, G, T
# are powers of 1024 ("10G" = 10 GiB); KB, MB, GB, TB of 1000.
cache_size = "%s"
# Recovery point objective: data written is stored on the backends within
# this time (a Go duration: "60s", "15m"; at least "1s").
rpo = "%s"
# Web interface listen address ("" for none). Only loopback addresses unless
# web_tls_cert and web_tls_key are set.
web = "%s"
# web_tls_cert = "cert.pem"
# web_tls_key = "key.pem"
# Prometheus metrics listen address ("" for none).
# metrics = "127.0.0.1:9100"
# Size at which zdb starts a new data file (each closed file is stored whole).
# data_file_size = "64M"
# Files stored through zstor at once.
# upload_concurrency = 2
# How long remote objects no index refers to any more are kept, so that an
# older index can still be restored.
# gc_grace = "24h"
# How long a write waits for cache space (while the backends cannot take
# what fills the cache) before it fails with ENOSPC.
# write_wait = "30s"
`
