// Package zstortest runs real zdb processes laid out as a zstor deployment
// (data backends in groups, metadata backends) and writes matching config
// files, for the tests of zstor and its command line.
package zstortest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qss/internal/zdbtest"
	"qss/zdb/client"
	"qss/zstor"
)

const (
	TestKey    = "4d0f2b1e8c3a5f6e7d9b0a1c2e3f4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5"
	OtherKey   = "0000000000000000000000000000000000000000000000000000000000000001"
	DataNS     = "zdata"
	DataPass   = "data-secret"
	MetaNS     = "zmeta"
	MetaPass   = "meta-secret"
	TestPrefix = "zstor-test"
)

// Cluster is a set of real zdb processes: data backends (seq-mode
// namespaces with a password) and metadata backends (user mode).
type Cluster struct {
	t         testing.TB
	Data      []*zdbtest.Server
	Meta      []*zdbtest.Server
	Root      string // the config's root: files to store go here
	Group     []int  // group of each data backend
	ChunkSize int    // chunk_size of the config (default 64 KiB)
}

// Ctx is a context bounding a test.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// New starts data backends in the given groups (sizes) and four
// metadata backends.
func New(t testing.TB, groups ...int) *Cluster {
	t.Helper()
	cl := &Cluster{t: t, Root: t.TempDir(), ChunkSize: 64 << 10}
	for g, n := range groups {
		for range n {
			cl.Data = append(cl.Data, cl.StartData())
			cl.Group = append(cl.Group, g)
		}
	}
	for range 4 {
		s := zdbtest.Start(t)
		CreateNS(t, s.Addr(), MetaNS, MetaPass, "")
		cl.Meta = append(cl.Meta, s)
	}
	return cl
}

// StartData starts one more data backend (not added to the cluster).
func (cl *Cluster) StartData() *zdbtest.Server {
	s := zdbtest.Start(cl.t, "--mode", "seq")
	CreateNS(cl.t, s.Addr(), DataNS, DataPass, "")
	return s
}

// CreateNS creates a namespace with a password (and a mode, unless "").
func CreateNS(t testing.TB, addr, ns, pass, mode string) {
	t.Helper()
	ctx := Ctx(t)
	c, err := client.New(ctx, client.Options{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.NSNew(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := c.NSSet(ctx, ns, "password", pass); err != nil {
		t.Fatal(err)
	}
	if mode != "" {
		if err := c.NSSet(ctx, ns, "mode", mode); err != nil {
			t.Fatal(err)
		}
	}
}

// ConfigTOML renders a config for the cluster; extra is appended to the
// top-level keys.
func (cl *Cluster) ConfigTOML(key string, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "minimal_shards = 4\nexpected_shards = 6\nroot = %q\nchunk_size = %d\nconcurrency = 2\n%s\n", cl.Root, cl.ChunkSize, extra)
	fmt.Fprintf(&b, "[encryption]\nalgorithm = \"AES\"\nkey = %q\n\n[compression]\nalgorithm = \"snappy\"\n\n", key)
	fmt.Fprintf(&b, "[meta]\ntype = \"zdb\"\n\n[meta.config]\nprefix = %q\n\n", TestPrefix)
	for _, s := range cl.Meta {
		fmt.Fprintf(&b, "[[meta.config.backends]]\naddress = %q\nnamespace = %q\npassword = %q\n\n", s.Addr(), MetaNS, MetaPass)
	}
	last := -1
	for i, s := range cl.Data {
		if cl.Group[i] != last {
			b.WriteString("[[groups]]\n")
			last = cl.Group[i]
		}
		fmt.Fprintf(&b, "[[groups.backends]]\naddress = %q\nnamespace = %q\npassword = %q\n\n", s.Addr(), DataNS, DataPass)
	}
	return b.String()
}

// WriteConfig writes ConfigTOML to a file and returns its path.
func (cl *Cluster) WriteConfig(key, extra string) string {
	p := filepath.Join(cl.t.TempDir(), "zstor_config.toml")
	if err := os.WriteFile(p, []byte(cl.ConfigTOML(key, extra)), 0o600); err != nil {
		cl.t.Fatal(err)
	}
	return p
}

// RandomBytes returns n random bytes.
func RandomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// WriteFile writes data at root/name and returns the path.
func (cl *Cluster) WriteFile(name string, data []byte) string {
	p := filepath.Join(cl.Root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		cl.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		cl.t.Fatal(err)
	}
	return p
}

// GrepBackends returns the files of every backend that contain marker.
func (cl *Cluster) GrepBackends(marker []byte) []string {
	var hits []string
	for _, s := range append(append([]*zdbtest.Server{}, cl.Data...), cl.Meta...) {
		filepath.Walk(s.Dir, func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err == nil && bytes.Contains(b, marker) {
				hits = append(hits, p)
			}
			return nil
		})
	}
	return hits
}

// DataFiles returns the data files (d<N>) of a data backend's namespace.
func DataFiles(s *zdbtest.Server) []string {
	m, _ := filepath.Glob(filepath.Join(s.DataDir(), DataNS, "d*"))
	return m
}

// FlipShardByte corrupts shard 2 of chunk 0 of the object key in its
// backend's data file (behind zdb's back, as a disk would), and returns the
// backend's index in the cluster.
func FlipShardByte(t *testing.T, c *zstor.Client, cl *Cluster, key string) int {
	t.Helper()
	ctx := Ctx(t)
	rec, err := c.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	loc := rec.Locations[0][2]
	b := c.Backends().Lookup(loc.Backend)
	shard, err := b.Get(ctx, loc.Seq)
	if err != nil {
		t.Fatal(err)
	}
	sample := shard[60:124]
	for _, f := range DataFiles(cl.Data[b.Index]) {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(raw, sample); i >= 0 {
			raw[i+10] ^= 0x40
			if err := os.WriteFile(f, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			return b.Index
		}
	}
	t.Fatal("shard not found in the backend's data files")
	return -1
}
