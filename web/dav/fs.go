package dav

import (
	"context"
	"encoding/xml"
	"io/fs"
	"os"
	"strings"
	"sync"

	"golang.org/x/net/webdav"

	"qss/web/files"
	"qss/web/fsys"
)

// fileSystem is webdav.FileSystem over an fsys.FS. Every name is passed
// through fsys.Clean; the root itself can be neither removed nor renamed.
type fileSystem struct {
	f     fsys.FS
	props *deadProps
}

var _ webdav.FileSystem = (*fileSystem)(nil)

func newFileSystem(f fsys.FS) *fileSystem {
	return &fileSystem{f: f, props: newDeadProps()}
}

// clean is fsys.Clean with the error as a *fs.PathError, which webdav
// treats as a bad resource.
func clean(op, name string) (string, error) {
	n, err := fsys.Clean(name)
	if err != nil {
		return "", &fs.PathError{Op: op, Path: name, Err: err}
	}
	return n, nil
}

func (s *fileSystem) Mkdir(ctx context.Context, name string, perm os.FileMode) error {
	n, err := clean("mkdir", name)
	if err != nil {
		return err
	}
	return s.f.Mkdir(n, perm)
}

const writeFlags = os.O_WRONLY | os.O_RDWR | os.O_CREATE | os.O_TRUNC | os.O_APPEND

func (s *fileSystem) OpenFile(ctx context.Context, name string, flag int, perm os.FileMode) (webdav.File, error) {
	n, err := clean("open", name)
	if err != nil {
		return nil, err
	}
	var f fsys.File
	if flag&writeFlags == 0 {
		f, err = s.f.Open(n) // a directory or a regular file
	} else {
		f, err = s.f.OpenFile(n, flag, perm)
	}
	if err != nil {
		return nil, err
	}
	return &file{File: f, name: n, fs: s}, nil
}

func (s *fileSystem) RemoveAll(ctx context.Context, name string) error {
	n, err := clean("remove", name)
	if err != nil {
		return err
	}
	if n == "." {
		return &fs.PathError{Op: "remove", Path: "/", Err: fs.ErrPermission}
	}
	if _, err := s.f.Lstat(n); err != nil {
		return err
	}
	err = s.f.RemoveAll(n)
	s.props.removeTree(n)
	return err
}

func (s *fileSystem) Rename(ctx context.Context, oldName, newName string) error {
	o, err := clean("rename", oldName)
	if err != nil {
		return err
	}
	n, err := clean("rename", newName)
	if err != nil {
		return err
	}
	if o == "." || n == "." {
		return &fs.PathError{Op: "rename", Path: "/", Err: fs.ErrPermission}
	}
	if err := s.f.Rename(o, n); err != nil {
		return err
	}
	s.props.moveTree(o, n)
	return nil
}

func (s *fileSystem) Stat(ctx context.Context, name string) (os.FileInfo, error) {
	n, err := clean("stat", name)
	if err != nil {
		return nil, err
	}
	st, err := s.f.Stat(n)
	if err != nil {
		return nil, err
	}
	return info{st}, nil
}

// file is an open fsys.File as a webdav.File, with the dead properties of
// its name.
type file struct {
	fsys.File
	name string
	fs   *fileSystem
}

var (
	_ webdav.File            = (*file)(nil)
	_ webdav.DeadPropsHolder = (*file)(nil)
	_ webdav.ETager          = info{}
)

// Readdir lists the directory with lstat information, except that a
// symbolic link to a regular file inside the tree is shown as that file
// and any other link is left out (see the package comment). The Reserved
// names of the root are left out too.
func (f *file) Readdir(count int) ([]fs.FileInfo, error) {
	des, err := f.File.ReadDir(count)
	out := make([]fs.FileInfo, 0, len(des))
	for _, de := range des {
		if f.name == "." && fsys.IsReserved(de.Name()) {
			continue
		}
		child := fsys.Join(f.name, de.Name())
		var st fs.FileInfo
		var ierr error
		if de.Type()&fs.ModeSymlink != 0 {
			st, ierr = f.fs.f.Stat(child)
			if ierr == nil && !st.Mode().IsRegular() {
				continue
			}
		} else {
			st, ierr = de.Info()
		}
		if ierr != nil {
			continue // removed meanwhile, or a link leading nowhere we serve
		}
		out = append(out, info{st})
	}
	return out, err
}

// Stat is the file's information, with its entity tag.
func (f *file) Stat() (fs.FileInfo, error) {
	st, err := f.File.Stat()
	if err != nil {
		return nil, err
	}
	return info{st}, nil
}

// info is a FileInfo whose entity tag (webdav.ETager) is the one the web
// API gives the same file (files.ETag), so a client may mix both.
type info struct{ fs.FileInfo }

func (i info) ETag(ctx context.Context) (string, error) { return files.ETag(i.FileInfo), nil }

func (f *file) DeadProps() (map[xml.Name]webdav.Property, error) {
	return f.fs.props.get(f.name), nil
}

func (f *file) Patch(patches []webdav.Proppatch) ([]webdav.Propstat, error) {
	return f.fs.props.patch(f.name, patches), nil
}

// Bounds on dead properties, so PROPPATCH cannot fill the memory.
const (
	maxPropsPerName = 64 << 10 // bytes of one resource's properties
	maxPropsTotal   = 16 << 20 // bytes of all of them
)

// deadProps holds PROPPATCH's properties by Clean name, in memory.
type deadProps struct {
	mu    sync.Mutex
	m     map[string]map[xml.Name]webdav.Property
	total int
}

func newDeadProps() *deadProps {
	return &deadProps{m: map[string]map[xml.Name]webdav.Property{}}
}

func propSize(p webdav.Property) int {
	return len(p.XMLName.Space) + len(p.XMLName.Local) + len(p.Lang) + len(p.InnerXML)
}

func mapSize(m map[xml.Name]webdav.Property) int {
	n := 0
	for _, p := range m {
		n += propSize(p)
	}
	return n
}

func (d *deadProps) get(name string) map[xml.Name]webdav.Property {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[xml.Name]webdav.Property, len(d.m[name]))
	for k, v := range d.m[name] {
		out[k] = v
	}
	return out
}

// patch applies all patches or none (507 when over the bounds).
func (d *deadProps) patch(name string, patches []webdav.Proppatch) []webdav.Propstat {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.m[name]
	next := make(map[xml.Name]webdav.Property, len(old))
	for k, v := range old {
		next[k] = v
	}
	var names []webdav.Property
	for _, pp := range patches {
		for _, p := range pp.Props {
			names = append(names, webdav.Property{XMLName: p.XMLName})
			if pp.Remove {
				delete(next, p.XMLName)
			} else {
				next[p.XMLName] = p
			}
		}
	}
	oldSize, newSize := mapSize(old), mapSize(next)
	if newSize > maxPropsPerName || d.total-oldSize+newSize > maxPropsTotal {
		return []webdav.Propstat{{Status: 507, Props: names,
			ResponseDescription: "dead properties over the server's limit"}}
	}
	d.total += newSize - oldSize
	if len(next) == 0 {
		delete(d.m, name)
	} else {
		d.m[name] = next
	}
	return []webdav.Propstat{{Status: 200, Props: names}}
}

// under reports whether the Clean name is dir or inside it.
func under(name, dir string) bool {
	return dir == "." || name == dir || strings.HasPrefix(name, dir+"/")
}

// removeTree forgets the properties of name and everything under it.
func (d *deadProps) removeTree(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, m := range d.m {
		if under(k, name) {
			d.total -= mapSize(m)
			delete(d.m, k)
		}
	}
}

// moveTree moves the properties of from and everything under it to to,
// dropping those that were at to (a rename replaces).
func (d *deadProps) moveTree(from, to string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, m := range d.m {
		if under(k, to) && !under(k, from) {
			d.total -= mapSize(m)
			delete(d.m, k)
		}
	}
	moved := map[string]map[xml.Name]webdav.Property{}
	for k, m := range d.m {
		if under(k, from) {
			moved[to+strings.TrimPrefix(k, from)] = m
			delete(d.m, k)
		}
	}
	for k, m := range moved {
		d.m[k] = m
	}
}
