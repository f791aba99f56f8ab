package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestParseMasterKey(t *testing.T) {
	k, err := ParseMasterKey(strings.Repeat("0a", 32))
	if err != nil || k[0] != 0x0a || k[31] != 0x0a {
		t.Fatalf("ParseMasterKey: %v %v", k, err)
	}
	for _, bad := range []string{"", "zz", strings.Repeat("0", 62), strings.Repeat("0", 66), strings.Repeat("g", 64)} {
		if _, err := ParseMasterKey(bad); err == nil {
			t.Errorf("ParseMasterKey(%q): no error", bad)
		}
	}
}

func TestMasterKeyRedacted(t *testing.T) {
	k := testKey(0xab)
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "key", k)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s %x", k, k, k, k, k), buf.String()} {
		if strings.Contains(strings.ToLower(s), "abacad") || strings.Contains(s, "171") {
			t.Errorf("key leaks: %s", s)
		}
	}
}

func TestParseCompression(t *testing.T) {
	for _, name := range CompressionNames() {
		c, err := ParseCompression(strings.ToUpper(name))
		if err != nil || c.String() != name || !c.Valid() {
			t.Errorf("ParseCompression(%q) = %v, %v", name, c, err)
		}
	}
	if _, err := ParseCompression("brotli"); err == nil || !strings.Contains(err.Error(), "snappy") {
		t.Errorf("ParseCompression(brotli): %v", err)
	}
	if Compression(42).Valid() || Compression(42).String() != "compression(42)" {
		t.Error("Compression(42)")
	}
}

func TestDerivedKeysDiffer(t *testing.T) {
	m := testKey(1)
	id := ObjectID{1}
	keys := map[string]string{}
	for _, info := range []string{infoDataKey, infoShardKey, infoMetadataKey} {
		keys[string(deriveKey(m, id[:], info))] = info
	}
	keys[string(deriveKey(m, []byte{2}, infoDataKey))] = "other object"
	if len(keys) != 4 {
		t.Fatal("derived keys collide")
	}
}

func TestMetaSealer(t *testing.T) {
	s := NewMetaSealer(testKey(1))
	rec := []byte(`{"path":"/secret/file","size":42}`)
	ad := []byte("/zstor-meta/meta/abc")
	a, err := s.Seal(rec, ad)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.Seal(rec, ad)
	if bytes.Equal(a, b) {
		t.Error("two seals of one record are equal (salt not random)")
	}
	if len(a) != len(rec)+MetaOverhead || bytes.Contains(a, []byte("secret")) {
		t.Errorf("sealed record: %d bytes or plaintext visible", len(a))
	}
	got, err := s.Open(a, ad)
	if err != nil || !bytes.Equal(got, rec) {
		t.Fatalf("Open: %q, %v", got, err)
	}
	empty, _ := s.Seal(nil, nil)
	if got, err := s.Open(empty, nil); err != nil || len(got) != 0 {
		t.Errorf("empty record: %q, %v", got, err)
	}

	tampered := bytes.Clone(a)
	tampered[len(tampered)/2] ^= 1
	salt := bytes.Clone(a)
	salt[3] ^= 1
	for name, open := range map[string]func() ([]byte, error){
		"wrong key": func() ([]byte, error) { return NewMetaSealer(testKey(2)).Open(a, ad) },
		"wrong ad":  func() ([]byte, error) { return s.Open(a, []byte("/zstor-meta/meta/abd")) },
		"no ad":     func() ([]byte, error) { return s.Open(a, nil) },
		"tampered":  func() ([]byte, error) { return s.Open(tampered, ad) },
		"salt":      func() ([]byte, error) { return s.Open(salt, ad) },
		"truncated": func() ([]byte, error) { return s.Open(a[:MetaOverhead-1], ad) },
	} {
		if _, err := open(); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%s: %v, want ErrDecrypt", name, err)
		}
	}
	if a[0] != 2 {
		t.Errorf("seal version %d, want 2", a[0])
	}
	v3 := bytes.Clone(a)
	v3[0] = 3
	if _, err := s.Open(v3, ad); !errors.Is(err, ErrBadMetadata) {
		t.Errorf("version 3: %v", err)
	}
	// The version byte is authenticated: a v2 seal relabelled v1 (whose
	// associated data differs) does not open.
	v1 := bytes.Clone(a)
	v1[0] = 1
	if _, err := s.Open(v1, ad); !errors.Is(err, ErrDecrypt) {
		t.Errorf("v2 seal relabelled v1: %v, want ErrDecrypt", err)
	}
}
