package files

import (
	"archive/zip"
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

func readZip(t *testing.T, body []byte) map[string][]byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatalf("not a zip: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range zr.File {
		if path.IsAbs(f.Name) || strings.Contains(f.Name, "\\") || strings.Contains(f.Name, ".qsfs-") {
			t.Errorf("unsafe zip name %q", f.Name)
		}
		for _, el := range strings.Split(f.Name, "/") {
			if el == ".." || el == "." {
				t.Errorf("unsafe zip name %q", f.Name)
			}
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		out[f.Name] = b
	}
	return out
}

// TestZipRoundTrip: a folder with nested folders comes back byte for byte.
func TestZipRoundTrip(t *testing.T) {
	e := newEnv(t, Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	files := map[string]string{}
	for _, n := range []string{"album/a.jpg", "album/2024/b.bin", "album/2024/deep/c.txt", "album/empty.txt", "other.txt"} {
		b := make([]byte, rng.IntN(300000))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		files[n] = string(b)
		e.write(n, string(b))
	}
	e.write(".qsfs-trash/x/secret", "trash")
	// Names that mean a path to some unzip tools.
	e.write("album/..\\..\\win.txt", "w")
	files["album/.._.._win.txt"] = "w"
	r := e.get("/api/files/download?path=/album")
	want(t, r, http.StatusOK)
	if r.h.Get("Content-Type") != "application/zip" || !strings.Contains(r.h.Get("Content-Disposition"), `album.zip`) {
		t.Fatalf("headers %v", r.h)
	}
	got := readZip(t, r.body)
	for n, c := range files {
		if !strings.HasPrefix(n, "album/") {
			continue
		}
		if b, ok := got[n]; !ok || string(b) != c {
			t.Errorf("%s: %d bytes in the zip, want %d", n, len(b), len(c))
		}
	}
	for _, d := range []string{"album/", "album/2024/", "album/2024/deep/"} {
		if _, ok := got[d]; !ok {
			t.Errorf("no folder entry %s", d)
		}
	}
	if len(got) != 8 {
		t.Errorf("zip has %d entries: %v", len(got), keys(got))
	}
	// The whole tree and several names: relative names, no trash.
	got = readZip(t, e.get("/api/files/zip?path=/").body)
	if string(got["other.txt"]) != files["other.txt"] || string(got["album/2024/deep/c.txt"]) != files["album/2024/deep/c.txt"] {
		t.Errorf("root zip: %v", keys(got))
	}
	r = e.get("/api/files/zip?path=/album/2024/deep/c.txt&path=/other.txt")
	want(t, r, http.StatusOK)
	got = readZip(t, r.body)
	if len(got) != 2 || string(got["c.txt"]) != files["album/2024/deep/c.txt"] || string(got["other.txt"]) != files["other.txt"] {
		t.Errorf("two-name zip: %v", keys(got))
	}
	// A link inside the tree to a folder inside it is followed when asked
	// for; one to the outside is refused before any byte.
	if err := os.Symlink("album/2024", filepath.Join(e.dir, "recent")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(e.dir, "evil")); err != nil {
		t.Fatal(err)
	}
	got = readZip(t, e.get("/api/files/download?path=/recent").body)
	if string(got["recent/deep/c.txt"]) != files["album/2024/deep/c.txt"] {
		t.Errorf("zip of a link to a folder: %v", keys(got))
	}
	want(t, e.get("/api/files/zip?path=/other.txt&path=/evil"), http.StatusForbidden)
	want(t, e.get("/api/files/zip"), http.StatusBadRequest)
	want(t, e.get("/api/files/zip?path=/other.txt&path=/missing"), http.StatusNotFound)
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
