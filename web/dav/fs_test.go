package dav

import (
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/webdav"

	"qss/web/fsys"
)

// TestReaddir checks the listing itself: reserved names and links that
// lead out of the tree or to a folder are left out; a link to a file
// inside is shown as that file.
func TestReaddir(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("abc"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	os.Mkdir(filepath.Join(dir, fsys.TrashDir), 0o755)
	os.Mkdir(filepath.Join(dir, fsys.UploadsDir), 0o755)
	os.Mkdir(filepath.Join(dir, "sub", fsys.TrashDir), 0o755) // reserved only at the root
	os.WriteFile(filepath.Join(outside, "s"), []byte("secret"), 0o644)
	os.Symlink(filepath.Join(outside, "s"), filepath.Join(dir, "out"))
	os.Symlink("sub", filepath.Join(dir, "dirlink"))
	os.Symlink("a.txt", filepath.Join(dir, "filelink"))
	os.Symlink("nowhere", filepath.Join(dir, "dangling"))
	root, err := fsys.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	s := newFileSystem(root)
	list := func(name string) []string {
		f, err := s.OpenFile(context.Background(), name, os.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		infos, err := f.Readdir(-1)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, fi := range infos {
			names = append(names, fi.Name())
			if fi.Name() == "filelink" && (!fi.Mode().IsRegular() || fi.Size() != 3) {
				t.Errorf("filelink: %v %d", fi.Mode(), fi.Size())
			}
		}
		slices.Sort(names)
		return names
	}
	if got := list("/"); !slices.Equal(got, []string{"a.txt", "filelink", "sub"}) {
		t.Errorf("root lists %v", got)
	}
	if got := list("/sub/"); !slices.Equal(got, []string{fsys.TrashDir}) {
		t.Errorf("sub lists %v", got)
	}
	for _, bad := range []string{"/" + fsys.TrashDir, "/../x", "/a/./b"} {
		if _, err := s.OpenFile(context.Background(), bad, os.O_RDONLY, 0); err == nil {
			t.Errorf("OpenFile(%q) succeeded", bad)
		}
		if err := s.Mkdir(context.Background(), bad, 0o755); err == nil {
			t.Errorf("Mkdir(%q) succeeded", bad)
		}
	}
	if err := s.RemoveAll(context.Background(), "/"); err == nil {
		t.Error("RemoveAll of the root succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "a.txt")); err != nil {
		t.Fatal(err)
	}
}

// TestDeadProps checks that properties follow MOVE, go with DELETE, and
// that a PROPPATCH over the bounds changes nothing.
func TestDeadProps(t *testing.T) {
	d := newDeadProps()
	x := xml.Name{Space: "urn:t", Local: "x"}
	set := func(name, v string) int {
		ps := d.patch(name, []webdav.Proppatch{{Props: []webdav.Property{{XMLName: x, InnerXML: []byte(v)}}}})
		return ps[0].Status
	}
	if st := set("a/b", "1"); st != 200 {
		t.Fatal(st)
	}
	set("a/b/c", "2")
	set("ab", "3")
	d.moveTree("a", "z")
	if string(d.get("z/b")[x].InnerXML) != "1" || string(d.get("z/b/c")[x].InnerXML) != "2" || len(d.get("a/b")) != 0 {
		t.Fatalf("after move: %v", d.m)
	}
	if string(d.get("ab")[x].InnerXML) != "3" {
		t.Fatal("a sibling with a common prefix moved")
	}
	d.removeTree("z")
	if len(d.m) != 1 {
		t.Fatalf("after remove: %v", d.m)
	}
	if st := set("ab", strings.Repeat("v", maxPropsPerName)); st != 507 {
		t.Fatalf("oversized: %d", st)
	}
	if string(d.get("ab")[x].InnerXML) != "3" {
		t.Fatal("a refused patch changed the property")
	}
	total := d.total
	d.removeTree("ab")
	if d.total != 0 || total == 0 {
		t.Fatalf("byte count %d then %d", total, d.total)
	}
}
