package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"qss/zstor/pipeline"
)

func TestTemplateRoundTrip(t *testing.T) {
	data, err := Template(TemplateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "qsfs.toml")
	if err := WriteNew(path, data); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", info.Mode().Perm())
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("the template does not load: %v\n%s", err, data)
	}
	z := c.Zstor
	if z.MinimalShards != 4 || z.ExpectedShards != 6 || len(z.Backends()) != 6 || len(z.Meta.Backends) != 4 || z.Meta.Type != "zdb" {
		t.Errorf("zstor part: k=%d n=%d data=%d meta=%d type=%s", z.MinimalShards, z.ExpectedShards, len(z.Backends()), len(z.Meta.Backends), z.Meta.Type)
	}
	var zero pipeline.MasterKey
	if z.Encryption.Key == zero || z.Meta.Encryption == nil || z.Meta.Encryption.Key == zero || z.Meta.Encryption.Key == z.Encryption.Key {
		t.Error("the data and metadata keys must be set and differ")
	}
	if c.Path != filepath.Join(dir, TemplatePath) || c.CacheSize != 10<<30 || c.RPO.String() != "1m0s" || c.Web != TemplateWeb {
		t.Errorf("qsfs part %+v", c)
	}
}

func TestTemplateFreshKeys(t *testing.T) {
	a, err := Template(TemplateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Template(TemplateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := Parse(a, "/")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := Parse(b, "/")
	if err != nil {
		t.Fatal(err)
	}
	if ca.Zstor.Encryption.Key == cb.Zstor.Encryption.Key || ca.Zstor.MetaKey() == cb.Zstor.MetaKey() {
		t.Error("two templates share a key")
	}
}

func TestTemplateOptions(t *testing.T) {
	zstor := strings.SplitN(minimal, "[qsfs]", 2)[0]
	data, err := Template(TemplateOptions{Path: "/srv/q", CacheSize: "2G", RPO: "5m", NoWeb: true, Zstor: zstor})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data, "/")
	if err != nil {
		t.Fatal(err)
	}
	if c.Path != "/srv/q" || c.CacheSize != 2<<30 || c.RPO.String() != "5m0s" || c.Web != "" || c.Zstor.ExpectedShards != 3 {
		t.Errorf("options not applied: %+v", c)
	}
	if data, err = Template(TemplateOptions{Web: "-", Zstor: zstor}); err != nil {
		t.Fatal(err)
	}
	if c, err = Parse(data, "/"); err != nil || c.Web != "" {
		t.Errorf(`Web "-": web %q, %v`, c.Web, err)
	}
	// Bad options are refused here, naming the key.
	for _, o := range []TemplateOptions{{CacheSize: "ten"}, {RPO: "1ms"}, {Web: "0.0.0.0:80"}, {Path: "a\"b"}} {
		if _, err := Template(o); err == nil {
			t.Errorf("Template(%+v) accepted", o)
		}
	}
}

func TestWriteNewNeverOverwrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qsfs.toml")
	if err := os.WriteFile(path, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteNew(path, []byte("new"))
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("WriteNew over an existing file: %v", err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, []byte("mine")) {
		t.Errorf("existing file changed to %q", got)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o644 {
		t.Errorf("existing file's mode changed to %v", info.Mode().Perm())
	}
}
