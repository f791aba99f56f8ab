package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"

	"qss/zstor/pipeline"
)

// The 0-stor_v2 config shared by the project's tests. Read only.
const fixture = "../../../shared/fixtures/zstor/zstor_v2_config.toml"

func TestLoadFixture(t *testing.T) {
	c, err := Load(fixture)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("minimal_shards", c.MinimalShards, 2)
	check("expected_shards", c.ExpectedShards, 4)
	check("redundant_groups", c.RedundantGroups, 0)
	check("redundant_nodes", c.RedundantNodes, 0)
	check("root", c.Root, "/")
	check("socket", c.Socket, "/tmp/zstor.sock")
	check("pid_file", c.PIDFile, "/tmp/zstor.pid")
	check("prometheus_port", c.PrometheusPort, 9200)
	check("zdb_data_dir_path", c.ZdbDataDirPath, "/data/data/zdbfs-data")
	check("max_zdb_data_dir_size", c.MaxZdbDataDirSize, 2560)
	check("zdbfs_mountpoint", c.ZdbfsMountpoint, "/mnt/qsfs")
	check("encryption.algorithm", c.Encryption.Algorithm, "AES")
	check("encryption.source", c.Encryption.Source, "key")
	if c.Encryption.Key != (pipeline.MasterKey{}) {
		t.Error("encryption.key is not 32 zero bytes")
	}
	check("compression", c.Compression, pipeline.CompressionSnappy)
	check("chunk_size (default)", c.ChunkSize, pipeline.DefaultChunkSize)
	if c.Concurrency < 1 {
		t.Errorf("concurrency default %d", c.Concurrency)
	}
	check("meta.type", c.Meta.Type, MetaZdb)
	check("meta.config.prefix", c.Meta.Prefix, "zstor-meta")
	if c.Meta.Encryption == nil || c.Meta.Encryption.Key != pipeline.MasterKey(bytes.Repeat([]byte{1}, 32)) {
		t.Error("meta.config.encryption.key is not 32 bytes of 0x01")
	}
	if c.MetaKey() != c.Meta.Encryption.Key {
		t.Error("MetaKey is not the meta encryption key")
	}
	if len(c.Meta.Backends) != 4 {
		t.Fatalf("%d meta backends, want 4", len(c.Meta.Backends))
	}
	for i, b := range c.Meta.Backends {
		want := Backend{Address: fmt.Sprintf("[::1]:%d", 19900+i), Namespace: fmt.Sprintf("meta%d", i+1), Password: "secret"}
		check(fmt.Sprintf("meta.config.backends[%d]", i), b, want)
	}
	if len(c.Groups) != 1 || len(c.Groups[0].Backends) != 4 {
		t.Fatalf("groups %+v, want 1 group of 4", c.Groups)
	}
	addrs := []string{"[::1]:19900", "[::1]:19901", "127.0.0.1:19902", "127.0.0.1:19903"}
	for i, b := range c.Backends() {
		want := Backend{Address: addrs[i], Namespace: fmt.Sprintf("data%d", i+1), Password: "secret"}
		check(fmt.Sprintf("groups[0].backends[%d]", i), b, want)
	}
	o := c.PipelineOptions()
	if o.K != 2 || o.N != 4 || o.Compression != pipeline.CompressionSnappy || o.ChunkSize != c.ChunkSize {
		t.Errorf("PipelineOptions %+v", o)
	}
	if _, err := pipeline.NewEncoder(c.Encryption.Key, o); err != nil {
		t.Errorf("the fixture's options do not make an encoder: %v", err)
	}
}

// base is a small valid config; cases edit it with strings.Replace.
const base = `minimal_shards = 2
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
address = "zdb-3.example.com:9903"
`

const etcdMeta = `[meta]
type = "etcd"

[meta.config]
endpoints = ["http://127.0.0.1:2379", "etcd-2:2379"]
`

func edit(old, new string) string {
	if !strings.Contains(base, old) {
		panic("base has no " + old)
	}
	return strings.Replace(base, old, new, 1)
}

func TestParseBase(t *testing.T) {
	c, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.Meta.Encryption != nil || c.MetaKey() != c.Encryption.Key {
		t.Error("without [meta.config.encryption] MetaKey must be the data key")
	}
	if len(c.Backends()) != 3 || c.Groups[1].Backends[1].Address != "zdb-3.example.com:9903" {
		t.Errorf("backends %v", c.Backends())
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name string
		toml string
		err  error
		key  string // the error's Key
		msg  string // a part of the message
		line int    // when the decoder knows it
	}{
		{"syntax", "minimal_shards = \n", ErrSyntax, "", "", 1},
		{"unknown top-level key", edit("expected_shards = 3", "expected_shards = 3\nexpectedshards = 3"), ErrUnknownKey, "expectedshards", "unknown key", 3},
		{"unknown key in a backend", edit(`namespace = "a"`, `namespace = "a"`+"\nadress = \"x\""), ErrUnknownKey, "groups.backends.adress", "unknown key", 25},
		{"unknown key in meta encryption", edit(`prefix = "p"`, "prefix = \"p\"\n[meta.config.encryption]\nkey = \"00\"\nmode = \"gcm\""), ErrUnknownKey, "meta.config.encryption.mode", "", 18},
		{"unknown table", base + "\n[extra]\nx = 1\n", ErrUnknownKey, "extra", "", 0},
		{"several unknown", base + "\nfoo = 1\nbar = 2\n", ErrUnknownKey, "", "1 more unknown", 0},
		{"wrong type", edit("minimal_shards = 2", `minimal_shards = "2"`), ErrInvalid, "minimal_shards", "a TOML string where an integer is expected", 1},
		{"wrong type array", edit(`address = "127.0.0.1:9901"`, `address = ["a"]`), ErrInvalid, "groups.backends.address", "wrong type", 0},

		{"k missing", edit("minimal_shards = 2", ""), ErrInvalid, "minimal_shards", "missing", 0},
		{"n missing", edit("expected_shards = 3", ""), ErrInvalid, "expected_shards", "missing", 0},
		{"k > n", edit("minimal_shards = 2", "minimal_shards = 4"), ErrInvalid, "minimal_shards", "k = 4 is greater than expected_shards n = 3", 0},
		{"k = 0", edit("minimal_shards = 2", "minimal_shards = 0"), ErrInvalid, "minimal_shards", "at least 1", 0},
		{"k < 0", edit("minimal_shards = 2", "minimal_shards = -1"), ErrInvalid, "minimal_shards", "at least 1", 0},
		{"n too big", edit("expected_shards = 3", "expected_shards = 300"), ErrInvalid, "expected_shards", "at most 255", 0},
		{"redundant_nodes < 0", edit("expected_shards = 3", "expected_shards = 3\nredundant_nodes = -1"), ErrInvalid, "redundant_nodes", "negative", 0},
		{"min_store_shards < k", edit("expected_shards = 3", "expected_shards = 3\nmin_store_shards = 1"), ErrInvalid, "min_store_shards", "between minimal_shards (2) and expected_shards (3)", 0},
		{"min_store_shards > n", edit("expected_shards = 3", "expected_shards = 3\nmin_store_shards = 4"), ErrInvalid, "min_store_shards", "between", 0},
		{"prometheus port", edit("expected_shards = 3", "expected_shards = 3\nprometheus_port = 70000"), ErrInvalid, "prometheus_port", "1..65535", 0},

		{"key not hex", edit(`key = "0001`, `key = "zz01`), ErrInvalid, "encryption.key", "not hex", 0},
		{"key too short", edit(`1c1d1e1f"`, `1c1d1e"`), ErrInvalid, "encryption.key", "31 bytes", 0},
		{"key too long", edit(`1c1d1e1f"`, `1c1d1e1f20"`), ErrInvalid, "encryption.key", "33 bytes", 0},
		{"no key", edit(`key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"`, ""), ErrInvalid, "encryption", "no key", 0},
		{"no encryption", edit("[encryption]\nalgorithm = \"AES\"\nkey = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"", ""), ErrInvalid, "encryption", "missing", 0},
		{"unknown encryption", edit(`algorithm = "AES"`, `algorithm = "ChaCha20"`), ErrInvalid, "encryption.algorithm", `unknown encryption algorithm "ChaCha20"`, 0},
		{"key and passphrase", edit(`algorithm = "AES"`, `algorithm = "AES"`+"\npassphrase_file = \"x\""), ErrInvalid, "encryption", "not both", 0},
		{"argon2 with key", edit(`algorithm = "AES"`, `algorithm = "AES"`+"\nargon2_time = 2"), ErrInvalid, "encryption", "only go with passphrase_file", 0},
		{"bad meta key", edit(`prefix = "p"`, "prefix = \"p\"\n[meta.config.encryption]\nalgorithm = \"AES\"\nkey = \"abc\""), ErrInvalid, "meta.config.encryption.key", "not hex", 0},
		{"unknown compression", edit(`algorithm = "snappy"`, `algorithm = "brotli"`), ErrInvalid, "compression.algorithm", `unknown compression algorithm "brotli"`, 0},

		{"group without backends", base + "\n[[groups]]\n", ErrInvalid, "groups[2]", "no backends", 0},
		{"no groups", base[:strings.Index(base, "[[groups]]")], ErrInvalid, "groups", "no [[groups]]", 0},
		{"too few backends", edit("expected_shards = 3", "expected_shards = 4"), ErrInvalid, "groups", "3 data backends in all, expected_shards = 4", 0},
		{"address without port", edit(`"127.0.0.1:9901"`, `"127.0.0.1"`), ErrInvalid, "groups[0].backends[0].address", "missing port", 0},
		{"ipv6 without brackets", edit(`"[::1]:9902"`, `"::1:9902"`), ErrInvalid, "groups[1].backends[0].address", "needs brackets", 0},
		{"port out of range", edit(`"[::1]:9902"`, `"[::1]:99999"`), ErrInvalid, "groups[1].backends[0].address", "1..65535", 0},
		{"port zero", edit(`"[::1]:9902"`, `"[::1]:0"`), ErrInvalid, "groups[1].backends[0].address", "1..65535", 0},
		{"port name", edit(`"[::1]:9902"`, `"[::1]:zdb"`), ErrInvalid, "groups[1].backends[0].address", "1..65535", 0},
		{"bad hostname", edit(`"zdb-3.example.com:9903"`, `"zdb-.example.com:9903"`), ErrInvalid, "groups[1].backends[1].address", "invalid character", 0},
		{"bad ipv4", edit(`"zdb-3.example.com:9903"`, `"300.1.1.1:9903"`), ErrInvalid, "groups[1].backends[1].address", "neither an IP address nor a host name", 0},
		{"host in brackets", edit(`"zdb-3.example.com:9903"`, `"[zdb]:9903"`), ErrInvalid, "groups[1].backends[1].address", "not a valid IPv6", 0},
		{"ipv4 in brackets", edit(`"zdb-3.example.com:9903"`, `"[1.2.3.4]:9903"`), ErrInvalid, "groups[1].backends[1].address", "IPv6 addresses only", 0},
		{"no address", edit(`address = "zdb-3.example.com:9903"`, `namespace = "x"`), ErrInvalid, "groups[1].backends[1].address", "missing", 0},
		{"bad meta address", edit(`"127.0.0.1:9900"`, `"localhost"`), ErrInvalid, "meta.config.backends[0].address", "missing port", 0},
		{"long namespace", edit(`namespace = "a"`, `namespace = "`+strings.Repeat("n", 129)+`"`), ErrInvalid, "groups[0].backends[0].namespace", "at most 128", 0},

		{"no meta", edit("[meta]\ntype = \"zdb\"", "[metax]"), ErrUnknownKey, "metax", "", 0},
		{"meta type", edit(`type = "zdb"`, `type = "redis"`), ErrInvalid, "meta.type", `unknown metadata store "redis"`, 0},
		{"zdb meta without backends", edit("[[meta.config.backends]]\naddress = \"127.0.0.1:9900\"\nnamespace = \"meta\"", ""), ErrInvalid, "meta.config.backends", "no backends", 0},
		{"zdb meta with endpoints", edit(`prefix = "p"`, `prefix = "p"`+"\nendpoints = [\"a:1\"]"), ErrInvalid, "meta.config.endpoints", "only for type", 0},
		{"etcd without endpoints", strings.Replace(etcdMeta, `endpoints = ["http://127.0.0.1:2379", "etcd-2:2379"]`, "", 1), ErrInvalid, "meta.config.endpoints", "no endpoints", 0},
		{"etcd bad endpoint", strings.Replace(etcdMeta, `"etcd-2:2379"`, `"ftp://etcd-2:2379"`, 1), ErrInvalid, "meta.config.endpoints[1]", "want http or https", 0},
		{"etcd endpoint with path", strings.Replace(etcdMeta, `"etcd-2:2379"`, `"http://etcd-2:2379/v3"`, 1), ErrInvalid, "meta.config.endpoints[1]", "only scheme://host:port", 0},
		{"etcd with zdb backends", etcdMeta + "[[meta.config.backends]]\naddress = \"127.0.0.1:1\"\n", ErrInvalid, "meta.config.backends", "only for type", 0},

		{"chunk size too big", edit("expected_shards = 3", "expected_shards = 3\nchunk_size = \"32 MiB\""), ErrInvalid, "chunk_size", "must be 4096..16777032 with minimal_shards = 2", 0},
		{"chunk size too small", edit("expected_shards = 3", "expected_shards = 3\nchunk_size = 100"), ErrInvalid, "chunk_size", "must be 4096..", 0},
		{"chunk size unit", edit("expected_shards = 3", "expected_shards = 3\nchunk_size = \"4 MB\""), ErrInvalid, "chunk_size", "not a size", 0},
		{"chunk size type", edit("expected_shards = 3", "expected_shards = 3\nchunk_size = 1.5"), ErrInvalid, "chunk_size", "not a size", 0},
		{"concurrency", edit("expected_shards = 3", "expected_shards = 3\nconcurrency = -2"), ErrInvalid, "concurrency", "1..1024", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := tc.toml
			if strings.HasPrefix(doc, "[meta]") { // an etcd case: base with its [meta] replaced
				i, j := strings.Index(base, "[meta]"), strings.Index(base, "[[groups]]")
				doc = base[:i] + doc + "\n" + base[j:]
			}
			_, err := Parse([]byte(doc))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("err = %v, want %v", err, tc.err)
			}
			if tc.key != "" && ce.Key != tc.key {
				t.Errorf("key %q, want %q (err: %v)", ce.Key, tc.key, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err %q does not say %q", err, tc.msg)
			}
			if tc.line != 0 && ce.Line != tc.line {
				t.Errorf("line %d, want %d (err: %v)", ce.Line, tc.line, err)
			}
			if strings.Contains(err.Error(), "rawConfig") || strings.Contains(err.Error(), "config.raw") {
				t.Errorf("err leaks Go type names: %v", err)
			}
		})
	}
}

func TestGoodAddresses(t *testing.T) {
	for _, a := range []string{"127.0.0.1:9900", "[::1]:9900", "[2001:db8::1]:1", "[fe80::1%eth0]:9900", "localhost:9900", "zdb-1.example.com.:65535", "node_2:80", "10.0.0.1:9900"} {
		if err := checkAddress(a); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	if err := checkEndpoint("https://[::1]:2379"); err != nil {
		t.Error(err)
	}
}

func TestOurKeys(t *testing.T) {
	for _, alg := range []string{"none", "snappy", "zstd", "s2", "lz4", "ZSTD"} {
		c, err := Parse([]byte(edit(`algorithm = "snappy"`, fmt.Sprintf("algorithm = %q", alg))))
		if err != nil || !strings.EqualFold(c.Compression.String(), alg) {
			t.Errorf("compression %s: %v %v", alg, c, err)
		}
	}
	for v, want := range map[string]int{`8192`: 8192, `"1 MiB"`: 1 << 20, `"512KiB"`: 512 << 10, `"65536B"`: 65536, `"65536"`: 65536} {
		c, err := Parse([]byte(edit("expected_shards = 3", "expected_shards = 3\nchunk_size = "+v+"\nconcurrency = 3")))
		if err != nil || c.ChunkSize != want || c.Concurrency != 3 {
			t.Errorf("chunk_size = %s: %v, %v", v, c, err)
		}
	}
	if c, err := Parse([]byte(base)); err != nil || c.MinStoreShards != 3 {
		t.Errorf("min_store_shards default with k=2 n=3: %v, %v", c.MinStoreShards, err)
	}
	if c, err := Parse([]byte(edit("expected_shards = 3", "expected_shards = 3\nmin_store_shards = 2"))); err != nil || c.MinStoreShards != 2 {
		t.Errorf("min_store_shards = 2: %v, %v", c, err)
	}
	i, j := strings.Index(base, "[meta]"), strings.Index(base, "[[groups]]")
	doc := base[:i] + etcdMeta + "username = \"zstor\"\npassword = \"etcdpw\"\n\n" + base[j:]
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Meta.Type != MetaEtcd || len(c.Meta.Endpoints) != 2 || c.Meta.Username != "zstor" || c.Meta.Password != "etcdpw" || c.Meta.Prefix != DefaultMetaPrefix {
		t.Errorf("etcd meta %+v", c.Meta)
	}
	if strings.Contains(fmt.Sprint(slog.AnyValue(c.Meta).Resolve()), "etcdpw") {
		t.Error("Meta.LogValue shows the etcd password")
	}
	b := c.Groups[0].Backends[0]
	if strings.Contains(b.String(), "pw") || strings.Contains(fmt.Sprint(slog.AnyValue(b).Resolve()), "pw") || b.String() != "127.0.0.1:9901/a" {
		t.Errorf("Backend shows its password: %s", b)
	}
}

func TestPassphraseFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pass"), []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const salt = "0123456789abcdef0123456789abcdef"
	// Small argon2 parameters keep the test fast; the defaults are tested
	// for validity only.
	enc := fmt.Sprintf("[encryption]\nalgorithm = \"AES\"\npassphrase_file = \"pass\"\npassphrase_salt = %q\nargon2_time = 1\nargon2_memory_kib = 64\nargon2_threads = 1", salt)
	doc := edit("[encryption]\nalgorithm = \"AES\"\nkey = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"", enc)
	path := filepath.Join(dir, "zstor.toml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := argon2.IDKey([]byte("correct horse battery staple"), []byte(salt), 1, 64, 1, 32)
	if !bytes.Equal(c.Encryption.Key[:], want) {
		t.Error("key is not argon2id(passphrase without its newline, salt)")
	}
	if c.Encryption.Source != "passphrase_file pass" {
		t.Errorf("source %q", c.Encryption.Source)
	}

	for _, tc := range []struct{ name, from, to, key, msg string }{
		{"no salt", fmt.Sprintf("passphrase_salt = %q", salt), "", "encryption.passphrase_salt", "at least 16"},
		{"short salt", salt, "0123", "encryption.passphrase_salt", "4 bytes"},
		{"missing file", `"pass"`, `"nope"`, "encryption.passphrase_file", "no such file"},
		{"argon2 memory", "argon2_memory_kib = 64", "argon2_memory_kib = 4", "encryption.argon2_memory_kib", "at least 8 per thread"},
		{"argon2 time", "argon2_time = 1", "argon2_time = 0", "encryption.argon2_time", "1..1000"},
		{"argon2 threads", "argon2_threads = 1", "argon2_threads = 256", "encryption.argon2_threads", "1..255"},
	} {
		p := filepath.Join(dir, "bad.toml")
		os.WriteFile(p, []byte(strings.Replace(doc, tc.from, tc.to, 1)), 0o600)
		_, err := Load(p)
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(err.Error(), tc.msg) || ce.File != p {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	os.WriteFile(filepath.Join(dir, "empty"), []byte("\n"), 0o600)
	p := filepath.Join(dir, "bad.toml")
	os.WriteFile(p, []byte(strings.Replace(doc, `"pass"`, `"empty"`, 1)), 0o600)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("empty passphrase: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "none.toml")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
	p := filepath.Join(t.TempDir(), "z.toml")
	os.WriteFile(p, []byte(edit("minimal_shards = 2", "minimal_shards = 9")), 0o600)
	_, err := Load(p)
	if err == nil || !strings.HasPrefix(err.Error(), "zstor config "+p+": minimal_shards: ") {
		t.Errorf("error does not name the file and key: %v", err)
	}
}

func TestDuplicateBackendWarns(t *testing.T) {
	var logs bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(old)
	doc := edit(`address = "zdb-3.example.com:9903"`, `address = "127.0.0.1:9901"`+"\nnamespace = \"a\"\npassword = \"pw\"")
	if _, err := Parse([]byte(doc)); err != nil {
		t.Fatal(err) // 0-stor_v2 loads it, so must we
	}
	if !strings.Contains(logs.String(), "listed twice") || !strings.Contains(logs.String(), "groups[1].backends[1]") || strings.Contains(logs.String(), "pw") {
		t.Errorf("warning: %q", logs.String())
	}
}

// ParseClaiming leaves the caller's top-level names to the caller and is
// Parse for everything else.
func TestParseClaiming(t *testing.T) {
	shared := base + "\n[qsfs]\npath = \"x\"\nwhatever = 1\n\n[qsfs.sub]\ny = 2\n"
	qsfsLine := strings.Count(base, "\n") + 2
	if _, err := ParseClaiming([]byte(shared), "", "qsfs"); err != nil {
		t.Fatalf("claimed [qsfs]: %v", err)
	}
	dotted := "qsfs.path = \"x\"\n" + base
	if _, err := ParseClaiming([]byte(dotted), "", "qsfs"); err != nil {
		t.Fatalf("claimed dotted qsfs.path: %v", err)
	}
	// Not claimed: the same file is an unknown key, as in Parse.
	_, err := Parse([]byte(shared))
	var ce *Error
	if !errors.As(err, &ce) || !errors.Is(err, ErrUnknownKey) || ce.Key != "qsfs" || ce.Line != qsfsLine {
		t.Fatalf("Parse of [qsfs]: %v", err)
	}
	// An unknown key outside the claim is still reported, with its line.
	bad := strings.Replace(shared, "prefix = \"p\"", "prefix = \"p\"\nprefx = \"q\"", 1)
	_, err = ParseClaiming([]byte(bad), "", "qsfs")
	if !errors.As(err, &ce) || !errors.Is(err, ErrUnknownKey) || ce.Key != "meta.config.prefx" || ce.Line == 0 {
		t.Fatalf("unknown key beside a claim: %v", err)
	}
	if strings.Contains(ce.Msg, "qsfs") {
		t.Errorf("claimed keys listed as unknown: %v", err)
	}
	// Bad values are still zstor's errors.
	_, err = ParseClaiming([]byte(strings.Replace(shared, "minimal_shards = 2", "minimal_shards = 0", 1)), "", "qsfs")
	if !errors.As(err, &ce) || ce.Key != "minimal_shards" {
		t.Fatalf("bad zstor value: %v", err)
	}
}
