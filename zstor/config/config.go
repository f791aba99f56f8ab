// Package config loads zstor's configuration file: the TOML format of
// 0-stor_v2 (zstor_v2), every key with the same meaning, plus the keys this
// implementation adds. A config that loads in 0-stor_v2 loads here.
//
// Loading is strict: an unknown key, a value of the wrong type or an invalid
// setting is an error that names the full dotted key (and the line, when the
// TOML decoder knows it), so a typo never silently falls back to a default.
// Keys are resolved at load time — a passphrase is read and stretched with
// argon2id — so a Config holds ready-to-use master keys.
//
// The keys are documented in docs/zstor-format.md ("Configuration").
package config

import (
	"errors"
	"fmt"
	"log/slog"

	"qss/zstor/pipeline"
)

// Config is a loaded, validated zstor configuration.
type Config struct {
	// MinimalShards is k (0-stor_v2 minimal_shards): any k shards of a
	// chunk rebuild it.
	MinimalShards int
	// ExpectedShards is n (0-stor_v2 expected_shards): shards written per
	// chunk; n−k backends can be lost.
	ExpectedShards int
	// RedundantGroups is how many whole groups may be lost while every
	// object stays readable (0-stor_v2 redundant_groups).
	RedundantGroups int
	// RedundantNodes is how many backends of each group may be lost while
	// every object stays readable (0-stor_v2 redundant_nodes).
	RedundantNodes int

	// Root is the path prefix stripped from file paths to form keys
	// ("" when unset).
	Root string
	// Socket is the daemon's unix socket ("" when unset).
	Socket string
	// PIDFile is where the daemon writes its pid ("" when unset).
	PIDFile string
	// PrometheusPort serves metrics over HTTP; 0 means disabled.
	PrometheusPort int
	// ZdbDataDirPath is the local zdb data directory the daemon keeps
	// under MaxZdbDataDirSize ("" when unset).
	ZdbDataDirPath string
	// MaxZdbDataDirSize is the cap on ZdbDataDirPath in MiB; 0 means none.
	MaxZdbDataDirSize int64
	// ZdbfsMountpoint is the mount point of a zdbfs whose statistics the
	// daemon reports ("" when unset).
	ZdbfsMountpoint string

	// ChunkSize is the plaintext bytes per chunk (ours: chunk_size).
	ChunkSize int
	// Concurrency is how many chunks are processed at once (ours:
	// concurrency).
	Concurrency int
	// MinStoreShards is the fewest shards per chunk a store may write
	// when not all n fit on the usable backends (ours: min_store_shards,
	// default k+1 capped at n; n turns degraded stores off). Such an object
	// is degraded: repair writes the missing shards when backends return.
	MinStoreShards int

	// Encryption holds the data master key.
	Encryption Encryption
	// Compression is the chunk compression algorithm.
	Compression pipeline.Compression
	// Meta configures the metadata store.
	Meta Meta
	// Groups are the data backends, grouped by failure domain.
	Groups []Group
}

// Encryption is a resolved [encryption] table.
type Encryption struct {
	// Algorithm is always "AES" (AES-256-GCM), the only one 0-stor_v2
	// knows.
	Algorithm string
	// Key is the master key: from `key`, or derived from
	// `passphrase_file` with argon2id.
	Key pipeline.MasterKey
	// Source says where the key came from, for logs: "key" or
	// "passphrase_file <path>". It never contains key material.
	Source string
}

// Metadata store types.
const (
	MetaZdb  = "zdb"
	MetaEtcd = "etcd"
)

// DefaultMetaPrefix is the key prefix of metadata records when
// [meta.config] prefix is not set.
const DefaultMetaPrefix = "zstor-meta"

// Meta is the resolved [meta] table.
type Meta struct {
	// Type is MetaZdb or MetaEtcd.
	Type string
	// Prefix is prepended to every metadata key.
	Prefix string
	// Encryption is [meta.config.encryption]; nil when not set, in which
	// case metadata keys derive from the data master key (MetaKey).
	Encryption *Encryption
	// Backends are the user-mode zdb namespaces of a "zdb" store.
	Backends []Backend
	// Endpoints are the etcd client URLs of an "etcd" store.
	Endpoints []string
	// Username and Password authenticate to etcd (both empty: none).
	Username string
	Password string
}

// LogValue keeps the etcd password out of logs.
func (m Meta) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("type", m.Type),
		slog.String("prefix", m.Prefix),
		slog.Int("backends", len(m.Backends)),
		slog.Any("endpoints", m.Endpoints),
	)
}

// Group is one failure domain (say, a data center) of data backends.
type Group struct {
	Backends []Backend
}

// Backend is one zdb namespace.
type Backend struct {
	// Address is "host:port", "ip:port" or "[ipv6]:port", as written.
	Address string
	// Namespace is the zdb namespace; "" means the default namespace.
	Namespace string
	// Password is the namespace password; "" means none.
	Password string
}

// String names the backend without its password.
func (b Backend) String() string {
	if b.Namespace == "" {
		return b.Address
	}
	return b.Address + "/" + b.Namespace
}

// LogValue keeps the password out of logs.
func (b Backend) LogValue() slog.Value { return slog.StringValue(b.String()) }

// Backends returns every data backend, group after group.
func (c *Config) Backends() []Backend {
	var all []Backend
	for _, g := range c.Groups {
		all = append(all, g.Backends...)
	}
	return all
}

// MetaKey is the master key for metadata records: the one in
// [meta.config.encryption] when set, else the data master key (the metadata
// sealer derives its own keys from it with a distinct HKDF info string, so the
// two never share a key either way).
func (c *Config) MetaKey() pipeline.MasterKey {
	if c.Meta.Encryption != nil {
		return c.Meta.Encryption.Key
	}
	return c.Encryption.Key
}

// PipelineOptions returns the encoder options the config sets.
func (c *Config) PipelineOptions() pipeline.Options {
	return pipeline.Options{
		K:           c.MinimalShards,
		N:           c.ExpectedShards,
		Compression: c.Compression,
		ChunkSize:   c.ChunkSize,
		Concurrency: c.Concurrency,
	}
}

// Sentinel errors, matched by errors.Is on an *Error.
var (
	// ErrSyntax: the file is not valid TOML.
	ErrSyntax = errors.New("invalid TOML")
	// ErrUnknownKey: a key that neither 0-stor_v2 nor zstor knows.
	ErrUnknownKey = errors.New("unknown key")
	// ErrInvalid: a known key with a bad value, or a missing key.
	ErrInvalid = errors.New("invalid value")
)

// Error is a problem with a config file.
type Error struct {
	File string // the file's path; "" for Parse
	Line int    // 1-based line, 0 when unknown
	Key  string // full dotted key, with [i] for array elements; "" when none applies
	Msg  string // what is wrong
	Err  error  // ErrSyntax, ErrUnknownKey or ErrInvalid
}

func (e *Error) Error() string {
	s := "zstor config"
	if e.File != "" {
		s += " " + e.File
	}
	if e.Line > 0 {
		s += fmt.Sprintf(" line %d", e.Line)
	}
	s += ": "
	if e.Key != "" {
		s += e.Key + ": "
	}
	return s + e.Msg
}

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Err }

func invalid(key, format string, args ...any) *Error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...), Err: ErrInvalid}
}
