package zdb

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// fixtureDir is data written by the original 0-db v2.0.7 (shared/fixtures).
var fixtureDir = filepath.Join("..", "..", "shared", "fixtures", "zdb-v2")

type manifest struct {
	Namespaces map[string]struct {
		Mode     string            `json:"mode"`
		Password string            `json:"password"`
		Public   *bool             `json:"public"`
		MaxSize  uint64            `json:"maxsize"`
		Live     map[string]string `json:"live"`
		Deleted  []string          `json:"deleted"`
	} `json:"namespaces"`
}

// copyFixture copies the fixture to a temporary directory: tests never write
// into shared/.
func copyFixture(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(fixtureDir); err != nil {
		t.Fatalf("fixture missing: %v (shared/ must sit beside the repository)", err)
	}
	dst := t.TempDir()
	err := filepath.Walk(fixtureDir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(fixtureDir, path)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		defer out.Close()
		_, err = io.Copy(out, in)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func readManifest(t testing.TB) manifest {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtureDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestFixtureOpens opens a data directory written by 0-db v2 and finds
// exactly what the manifest lists: every live key with its value's SHA-256,
// no deleted key, and the namespace settings.
func TestFixtureOpens(t *testing.T) {
	dir := copyFixture(t)
	m := readManifest(t)
	e, err := Open(Options{DataDir: filepath.Join(dir, "data"), IndexDir: filepath.Join(dir, "index"),
		DataSize: 1 << 20, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	checkFixture(t, e, m)
}

func checkFixture(t *testing.T, e *Engine, m manifest) {
	t.Helper()
	for name, want := range m.Namespaces {
		ns := e.Namespace(name)
		if ns == nil {
			t.Fatalf("namespace %q not found", name)
		}
		if got := ns.Mode().String(); got != want.Mode {
			t.Errorf("%s: mode %s, want %s", name, got, want.Mode)
		}
		s := ns.Settings()
		if s.Password != want.Password {
			t.Errorf("%s: password %q, want %q", name, s.Password, want.Password)
		}
		if want.Public != nil && s.Public != *want.Public {
			t.Errorf("%s: public %v, want %v", name, s.Public, *want.Public)
		}
		if s.MaxSize != want.MaxSize {
			t.Errorf("%s: maxsize %d, want %d", name, s.MaxSize, want.MaxSize)
		}
		if ns.Len() != len(want.Live) {
			t.Errorf("%s: %d live keys, want %d", name, ns.Len(), len(want.Live))
		}
		for hk, sum := range want.Live {
			key, _ := hex.DecodeString(hk)
			v, err := ns.Get(key, nil)
			if err != nil {
				t.Errorf("%s: GET %s: %v", name, hk, err)
				continue
			}
			got := sha256.Sum256(v)
			if hex.EncodeToString(got[:]) != sum {
				t.Errorf("%s: GET %s: sha256 mismatch", name, hk)
			}
			if c, err := ns.Check(key); err != nil || c != 1 {
				t.Errorf("%s: CHECK %s = %d, %v", name, hk, c, err)
			}
		}
		for _, hk := range want.Deleted {
			key, _ := hex.DecodeString(hk)
			if _, err := ns.Get(key, nil); err != ErrNotFound {
				t.Errorf("%s: deleted key %s: GET gave %v", name, hk, err)
			}
		}
		// SCAN sees exactly the live keys, each once.
		seen := map[string]bool{}
		var cur []byte
		for {
			items, next, err := ns.Scan(cur, false, 100)
			if err == ErrNoMoreData {
				break
			}
			if err != nil {
				t.Fatalf("%s: scan: %v", name, err)
			}
			for _, it := range items {
				hk := hex.EncodeToString(it.Key)
				if _, ok := want.Live[hk]; !ok || seen[hk] {
					t.Errorf("%s: scan returned %s (live=%v, seen=%v)", name, hk, ok, seen[hk])
				}
				seen[hk] = true
			}
			cur = next
		}
		if len(seen) != len(want.Live) {
			t.Errorf("%s: scan found %d keys, want %d", name, len(seen), len(want.Live))
		}
	}
}
