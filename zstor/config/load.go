package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"

	toml "github.com/pelletier/go-toml/v2"

	"qss/zstor/pipeline"
)

// The file as written. Pointers tell "absent" from "zero" where it matters.
type rawConfig struct {
	MinimalShards     *int   `toml:"minimal_shards"`
	ExpectedShards    *int   `toml:"expected_shards"`
	RedundantGroups   int    `toml:"redundant_groups"`
	RedundantNodes    int    `toml:"redundant_nodes"`
	Root              string `toml:"root"`
	Socket            string `toml:"socket"`
	PIDFile           string `toml:"pid_file"`
	PrometheusPort    int    `toml:"prometheus_port"`
	ZdbDataDirPath    string `toml:"zdb_data_dir_path"`
	MaxZdbDataDirSize int64  `toml:"max_zdb_data_dir_size"`
	ZdbfsMountpoint   string `toml:"zdbfs_mountpoint"`

	// Ours.
	ChunkSize      any  `toml:"chunk_size"` // integer bytes or a string such as "4 MiB"
	Concurrency    int  `toml:"concurrency"`
	MinStoreShards *int `toml:"min_store_shards"`

	Encryption  *rawEncryption  `toml:"encryption"`
	Compression *rawCompression `toml:"compression"`
	Meta        *rawMeta        `toml:"meta"`
	Groups      []rawGroup      `toml:"groups"`
}

type rawEncryption struct {
	Algorithm string `toml:"algorithm"`
	Key       string `toml:"key"`

	// Ours: the key from a passphrase, stretched with argon2id.
	PassphraseFile  string `toml:"passphrase_file"`
	PassphraseSalt  string `toml:"passphrase_salt"`
	Argon2Time      *int   `toml:"argon2_time"`
	Argon2MemoryKiB *int   `toml:"argon2_memory_kib"`
	Argon2Threads   *int   `toml:"argon2_threads"`
}

type rawCompression struct {
	Algorithm string `toml:"algorithm"`
}

type rawMeta struct {
	Type   string         `toml:"type"`
	Config *rawMetaConfig `toml:"config"`
}

type rawMetaConfig struct {
	Prefix     string         `toml:"prefix"`
	Encryption *rawEncryption `toml:"encryption"`
	Backends   []rawBackend   `toml:"backends"`  // zdb
	Endpoints  []string       `toml:"endpoints"` // etcd (ours)
	Username   string         `toml:"username"`  // etcd (ours)
	Password   string         `toml:"password"`  // etcd (ours)
}

type rawGroup struct {
	Backends []rawBackend `toml:"backends"`
}

type rawBackend struct {
	Address   string `toml:"address"`
	Namespace string `toml:"namespace"`
	Password  string `toml:"password"`
}

// Load reads and validates the config file at path. A relative
// passphrase_file is taken relative to the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("zstor config: %w", err)
	}
	c, err := parse(data, filepath.Dir(path))
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.File = path
		}
		return nil, err
	}
	return c, nil
}

// Parse validates a config given as TOML text. A relative passphrase_file is
// taken relative to the working directory.
func Parse(data []byte) (*Config, error) {
	return parse(data, "")
}

// ParseClaiming validates the zstor part of a file that zstor shares with
// another program (qsfs.toml: every zstor key plus a [qsfs] table). The
// top-level keys and tables named in claimed belong to the caller: they are
// skipped here instead of being unknown keys, and the caller validates them.
// Everything else behaves as in Parse, errors included; a relative
// passphrase_file is taken relative to dir ("" for the working directory).
func ParseClaiming(data []byte, dir string, claimed ...string) (*Config, error) {
	return parse(data, dir, claimed...)
}

func parse(data []byte, dir string, claimed ...string) (*Config, error) {
	var raw rawConfig
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		if err = unclaimed(err, claimed); err != nil {
			return nil, decodeError(err)
		}
	}
	return raw.resolve(dir)
}

// unclaimed drops, from a strict-mode error, the unknown keys under a claimed
// top-level name. It returns nil when none is left: the strict decoder has
// then decoded everything else, so the caller may go on with the result.
func unclaimed(err error, claimed []string) error {
	var strict *toml.StrictMissingError
	if len(claimed) == 0 || !errors.As(err, &strict) {
		return err
	}
	var left []toml.DecodeError
	for _, e := range strict.Errors {
		if k := e.Key(); len(k) == 0 || !slices.Contains(claimed, k[0]) {
			left = append(left, e)
		}
	}
	if len(left) == 0 {
		return nil
	}
	return &toml.StrictMissingError{Errors: left}
}

// decodeError turns a go-toml error into an *Error naming the key and line.
func decodeError(err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		first := &strict.Errors[0]
		line, _ := first.Position()
		msg := "unknown key (not a 0-stor_v2 or zstor setting)"
		if n := len(strict.Errors) - 1; n > 0 {
			var more []string
			for _, e := range strict.Errors[1:] {
				more = append(more, strings.Join(e.Key(), "."))
			}
			msg += fmt.Sprintf("; %d more unknown: %s", n, strings.Join(more, ", "))
		}
		return &Error{Line: line, Key: strings.Join(first.Key(), "."), Msg: msg, Err: ErrUnknownKey}
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		sentinel := ErrSyntax
		if m := typeMismatch.FindStringSubmatch(msg); m != nil {
			msg = fmt.Sprintf("wrong type: a TOML %s where %s is expected", m[1], goTypeName(m[2]))
			sentinel = ErrInvalid
		}
		return &Error{Line: line, Key: strings.Join(de.Key(), "."), Msg: msg, Err: sentinel}
	}
	return &Error{Msg: err.Error(), Err: ErrSyntax}
}

var typeMismatch = regexp.MustCompile(`^cannot decode TOML (\w+) into .* of type (.+)$`)

func goTypeName(t string) string {
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "*int"):
		return "an integer"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "[]"):
		return "an array"
	case strings.Contains(t, "raw"):
		return "a table"
	}
	return t
}

func (r *rawConfig) resolve(dir string) (*Config, error) {
	c := &Config{
		RedundantGroups:   r.RedundantGroups,
		RedundantNodes:    r.RedundantNodes,
		Root:              r.Root,
		Socket:            r.Socket,
		PIDFile:           r.PIDFile,
		PrometheusPort:    r.PrometheusPort,
		ZdbDataDirPath:    r.ZdbDataDirPath,
		MaxZdbDataDirSize: r.MaxZdbDataDirSize,
		ZdbfsMountpoint:   r.ZdbfsMountpoint,
	}

	// Shards.
	if r.MinimalShards == nil {
		return nil, invalid("minimal_shards", "missing (k: how many shards rebuild a chunk)")
	}
	if r.ExpectedShards == nil {
		return nil, invalid("expected_shards", "missing (n: how many shards each chunk is stored as)")
	}
	c.MinimalShards, c.ExpectedShards = *r.MinimalShards, *r.ExpectedShards
	switch {
	case c.MinimalShards < 1:
		return nil, invalid("minimal_shards", "is %d, must be at least 1", c.MinimalShards)
	case c.ExpectedShards < c.MinimalShards:
		return nil, invalid("minimal_shards", "k = %d is greater than expected_shards n = %d", c.MinimalShards, c.ExpectedShards)
	case c.ExpectedShards > pipeline.MaxShards:
		return nil, invalid("expected_shards", "is %d, at most %d", c.ExpectedShards, pipeline.MaxShards)
	case c.RedundantGroups < 0:
		return nil, invalid("redundant_groups", "is %d, must not be negative", c.RedundantGroups)
	case c.RedundantNodes < 0:
		return nil, invalid("redundant_nodes", "is %d, must not be negative", c.RedundantNodes)
	case c.PrometheusPort < 0 || c.PrometheusPort > 65535:
		return nil, invalid("prometheus_port", "is %d, must be 1..65535 (or absent)", c.PrometheusPort)
	case c.MaxZdbDataDirSize < 0:
		return nil, invalid("max_zdb_data_dir_size", "is %d, must not be negative (MiB)", c.MaxZdbDataDirSize)
	}
	c.MinStoreShards = min(c.MinimalShards+1, c.ExpectedShards)
	if r.MinStoreShards != nil {
		c.MinStoreShards = *r.MinStoreShards
		if c.MinStoreShards < c.MinimalShards || c.MinStoreShards > c.ExpectedShards {
			return nil, invalid("min_store_shards", "is %d, must be between minimal_shards (%d) and expected_shards (%d)",
				c.MinStoreShards, c.MinimalShards, c.ExpectedShards)
		}
	}

	// Chunks and concurrency.
	var err error
	if c.ChunkSize, err = parseSize(r.ChunkSize); err != nil {
		return nil, invalid("chunk_size", "%v", err)
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = pipeline.DefaultChunkSize
	}
	if maxc := pipeline.MaxChunkSize(c.MinimalShards); c.ChunkSize < minChunkSize || c.ChunkSize > maxc {
		return nil, invalid("chunk_size", "%d bytes, must be %d..%d with minimal_shards = %d (each shard must fit in a %d-byte zdb value)",
			c.ChunkSize, minChunkSize, maxc, c.MinimalShards, pipeline.MaxShardSize)
	}
	switch {
	case r.Concurrency < 0 || r.Concurrency > maxConcurrency:
		return nil, invalid("concurrency", "is %d, must be 1..%d (or absent for the number of CPUs)", r.Concurrency, maxConcurrency)
	case r.Concurrency == 0:
		c.Concurrency = runtime.GOMAXPROCS(0)
	default:
		c.Concurrency = r.Concurrency
	}

	// Encryption and compression.
	if r.Encryption == nil {
		return nil, invalid("encryption", "missing: set [encryption] key (64 hex digits) or passphrase_file")
	}
	enc, err := r.Encryption.resolve("encryption", dir)
	if err != nil {
		return nil, err
	}
	c.Encryption = *enc
	c.Compression = pipeline.CompressionSnappy // 0-stor_v2's only algorithm
	if r.Compression != nil && r.Compression.Algorithm != "" {
		if c.Compression, err = pipeline.ParseCompression(r.Compression.Algorithm); err != nil {
			return nil, invalid("compression.algorithm", "%v", err)
		}
	}

	// Metadata and data backends.
	if c.Meta, err = r.Meta.resolve(dir); err != nil {
		return nil, err
	}
	if err := c.resolveGroups(r.Groups); err != nil {
		return nil, err
	}
	return c, nil
}

// Limits of our own keys.
const (
	minChunkSize   = 4 << 10
	maxConcurrency = 1024
)

func (r *rawMeta) resolve(dir string) (Meta, error) {
	if r == nil {
		return Meta{}, invalid("meta", `missing: set [meta] type = "zdb" (with [meta.config] backends) or "etcd" (with endpoints)`)
	}
	m := Meta{Type: strings.ToLower(r.Type), Prefix: DefaultMetaPrefix}
	if m.Type != MetaZdb && m.Type != MetaEtcd {
		return m, invalid("meta.type", "unknown metadata store %q (want %q or %q)", r.Type, MetaZdb, MetaEtcd)
	}
	rc := r.Config
	if rc == nil {
		return m, invalid("meta.config", "missing")
	}
	if rc.Prefix != "" {
		m.Prefix = rc.Prefix
	}
	if rc.Encryption != nil {
		enc, err := rc.Encryption.resolve("meta.config.encryption", dir)
		if err != nil {
			return m, err
		}
		m.Encryption = enc
	}
	switch m.Type {
	case MetaZdb:
		switch {
		case len(rc.Endpoints) > 0:
			return m, invalid("meta.config.endpoints", `only for type = "etcd"`)
		case rc.Username != "" || rc.Password != "":
			return m, invalid("meta.config", `username and password are only for type = "etcd" (a zdb backend's password goes in its [[meta.config.backends]] entry)`)
		case len(rc.Backends) == 0:
			return m, invalid("meta.config.backends", "no backends for the zdb metadata store")
		}
		for i, rb := range rc.Backends {
			b, err := rb.resolve(fmt.Sprintf("meta.config.backends[%d]", i))
			if err != nil {
				return m, err
			}
			m.Backends = append(m.Backends, b)
		}
	case MetaEtcd:
		switch {
		case len(rc.Backends) > 0:
			return m, invalid("meta.config.backends", `only for type = "zdb"; etcd takes endpoints`)
		case len(rc.Endpoints) == 0:
			return m, invalid("meta.config.endpoints", "no endpoints for the etcd metadata store")
		case rc.Password != "" && rc.Username == "":
			return m, invalid("meta.config.password", "set without username")
		}
		for i, e := range rc.Endpoints {
			if err := checkEndpoint(e); err != nil {
				return m, invalid(fmt.Sprintf("meta.config.endpoints[%d]", i), "%v", err)
			}
		}
		m.Endpoints = rc.Endpoints
		m.Username, m.Password = rc.Username, rc.Password
	}
	return m, nil
}

func (c *Config) resolveGroups(groups []rawGroup) error {
	if len(groups) == 0 {
		return invalid("groups", "no [[groups]] of data backends")
	}
	seen := map[string]string{}
	total := 0
	for gi, g := range groups {
		key := fmt.Sprintf("groups[%d]", gi)
		if len(g.Backends) == 0 {
			return invalid(key, "group has no backends ([[groups.backends]])")
		}
		var out Group
		for bi, rb := range g.Backends {
			bkey := fmt.Sprintf("%s.backends[%d]", key, bi)
			b, err := rb.resolve(bkey)
			if err != nil {
				return err
			}
			id := b.Address + "\x00" + b.Namespace
			if prev, dup := seen[id]; dup {
				// 0-stor_v2 loads such a config, so we do too; placement
				// must still never put two shards of a chunk on it.
				slog.Warn("zstor config: the same data backend is listed twice",
					slog.String("key", bkey), slog.String("same_as", prev), slog.Any("backend", b))
			} else {
				seen[id] = bkey
			}
			out.Backends = append(out.Backends, b)
		}
		total += len(out.Backends)
		c.Groups = append(c.Groups, out)
	}
	if total < c.ExpectedShards {
		return invalid("groups", "%d data backends in all, expected_shards = %d needs at least that many (no two shards of a chunk on one backend)", total, c.ExpectedShards)
	}
	return nil
}

func (r rawBackend) resolve(key string) (Backend, error) {
	if err := checkAddress(r.Address); err != nil {
		return Backend{}, invalid(key+".address", "%v", err)
	}
	if len(r.Namespace) > maxNamespaceLen {
		return Backend{}, invalid(key+".namespace", "%d bytes, at most %d", len(r.Namespace), maxNamespaceLen)
	}
	if len(r.Password) > maxPasswordLen {
		return Backend{}, invalid(key+".password", "%d bytes, at most %d", len(r.Password), maxPasswordLen)
	}
	return Backend(r), nil
}

// zdb's limits on namespace names and passwords.
const (
	maxNamespaceLen = 128
	maxPasswordLen  = 255
)
