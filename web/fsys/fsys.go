// Package fsys is the file tree the web interface and WebDAV serve: a small
// interface over a directory (in qsfs, the FUSE mount of the filesystem),
// and the one place where a path a client sent becomes a path inside that
// tree.
//
// Invariant: every name passed to an FS method is the output of Clean (or
// Join of Clean outputs): slash-separated, relative to the root, without
// "." or ".." elements, and "." for the root itself. Root enforces the rest
// with os.Root: no name, symlink included, resolves outside the root.
package fsys

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"
)

// File is an open file of an FS. *os.File implements it.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Seeker
	io.Closer
	Stat() (fs.FileInfo, error)
	ReadDir(n int) ([]fs.DirEntry, error)
	Truncate(size int64) error
	Sync() error
}

// FS is a writable file tree. Names are Clean paths (see the package
// invariant). Errors wrap the fs.Err* sentinels where they apply.
type FS interface {
	Stat(name string) (fs.FileInfo, error)
	Lstat(name string) (fs.FileInfo, error)
	// Open opens a regular file or a directory for reading. Any other
	// kind of file (FIFO, device, socket) is refused with ErrNotRegular,
	// so a client can never block the server on a FIFO.
	Open(name string) (File, error)
	// OpenFile opens a regular file with os.OpenFile's flags.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	ReadDir(name string) ([]fs.DirEntry, error)
	Mkdir(name string, perm fs.FileMode) error
	MkdirAll(name string, perm fs.FileMode) error
	Remove(name string) error
	RemoveAll(name string) error
	// Rename moves oldname to newname, replacing a file there (as
	// rename(2) does); callers that must not replace check first.
	Rename(oldname, newname string) error
	Chtimes(name string, atime, mtime time.Time) error
	Readlink(name string) (string, error)
}

// ErrNotRegular is returned when a FIFO, device or socket is opened.
var ErrNotRegular = errors.New("not a regular file or directory")

// ErrBadPath is wrapped by every error of Clean.
var ErrBadPath = errors.New("invalid path")

// Reserved names in the root directory belong to the web interface (the
// trash, uploads in progress): Clean refuses them and listings hide them.
var Reserved = []string{TrashDir, UploadsDir}

const (
	// TrashDir holds deleted files until they are restored or purged.
	TrashDir = ".qsfs-trash"
	// UploadsDir holds resumable uploads until they complete.
	UploadsDir = ".qsfs-uploads"
)

// MaxPath is the longest path Clean accepts, in bytes (PATH_MAX); MaxName
// the longest element (NAME_MAX).
const (
	MaxPath = 4096
	MaxName = 255
)

// Clean turns a client's path ("/docs/a.txt", "docs/a.txt/", "", "/")
// into an FS name ("docs/a.txt", "."). It refuses, with an error wrapping
// ErrBadPath: ".." and "." elements, NUL bytes, elements longer than
// MaxName, paths longer than MaxPath, and paths into a Reserved root
// name. A leading slash is the root of the tree, never the host's root;
// repeated slashes are one. The path is taken as already URL-decoded:
// "%2e%2e" reaching here is a file literally named so.
func Clean(p string) (string, error) {
	return clean(p, false)
}

// CleanInternal is Clean without the Reserved check, for the packages
// that own the reserved directories.
func CleanInternal(p string) (string, error) {
	return clean(p, true)
}

func clean(p string, internal bool) (string, error) {
	if len(p) > MaxPath {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrBadPath, MaxPath)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("%w: contains a NUL byte", ErrBadPath)
	}
	var out []string
	for _, e := range strings.Split(p, "/") {
		switch {
		case e == "":
			continue
		case e == "." || e == "..":
			return "", fmt.Errorf("%w: %q elements are not allowed", ErrBadPath, e)
		case len(e) > MaxName:
			return "", fmt.Errorf("%w: a name is longer than %d bytes", ErrBadPath, MaxName)
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return ".", nil
	}
	if !internal && IsReserved(out[0]) {
		return "", fmt.Errorf("%w: %q is reserved", ErrBadPath, out[0])
	}
	return strings.Join(out, "/"), nil
}

// IsReserved reports whether a root-level name is Reserved.
func IsReserved(name string) bool {
	for _, r := range Reserved {
		if name == r {
			return true
		}
	}
	return false
}

// Join joins a Clean directory name and a Clean relative name.
func Join(dir, name string) string {
	if dir == "." {
		return name
	}
	if name == "." {
		return dir
	}
	return dir + "/" + name
}

// Dir and Base split a Clean name ("a/b" → "a", "b"; "a" → ".", "a").
func Dir(name string) string { return path.Dir(name) }

// Base is the last element of a Clean name.
func Base(name string) string { return path.Base(name) }

// Display is a Clean name as clients show it: "/" + name.
func Display(name string) string {
	if name == "." {
		return "/"
	}
	return "/" + name
}

// Root is an FS over a directory of the host, confined with os.Root.
//
// A Root from OpenDir holds no descriptor between calls: each call opens
// the directory afresh and checks that it is still the same filesystem
// (device) as when it was opened. Serving a FUSE mount this way, an idle
// server never keeps the mount busy (umount works), and after an unmount
// it refuses to serve the empty directory underneath.
type Root struct {
	r   *os.Root // held open (OpenRoot); nil for OpenDir
	dir string
	dev uint64
}

var _ FS = (*Root)(nil)

// ErrGone is returned when an OpenDir root is no longer the filesystem it
// was (unmounted).
var ErrGone = errors.New("the served directory is no longer mounted")

// OpenRoot opens dir as an FS that holds the directory open.
func OpenRoot(dir string) (*Root, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &Root{r: r, dir: dir}, nil
}

// OpenDir opens dir as an FS that holds no descriptor between calls.
func OpenDir(dir string) (*Root, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	dev, err := devOf(r)
	if err != nil {
		return nil, err
	}
	return &Root{dir: dir, dev: dev}, nil
}

func devOf(r *os.Root) (uint64, error) {
	st, err := r.Stat(".")
	if err != nil {
		return 0, err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, errors.New("no device number")
	}
	return uint64(sys.Dev), nil
}

// root is the os.Root of one call and its release.
func (r *Root) root() (*os.Root, func(), error) {
	if r.r != nil {
		return r.r, func() {}, nil
	}
	or, err := os.OpenRoot(r.dir)
	if err != nil {
		return nil, nil, err
	}
	if dev, err := devOf(or); err != nil || dev != r.dev {
		or.Close()
		return nil, nil, &fs.PathError{Op: "open", Path: ".", Err: ErrGone}
	}
	return or, func() { or.Close() }, nil
}

// Close releases the root's directory descriptor (if it holds one).
func (r *Root) Close() error {
	if r.r != nil {
		return r.r.Close()
	}
	return nil
}

// Name is the host directory of the root.
func (r *Root) Name() string { return r.dir }

// do runs op on the call's os.Root.
func do[T any](r *Root, op func(*os.Root) (T, error)) (T, error) {
	or, release, err := r.root()
	if err != nil {
		var zero T
		return zero, err
	}
	defer release()
	return op(or)
}

func do0(r *Root, op func(*os.Root) error) error {
	_, err := do(r, func(or *os.Root) (struct{}, error) { return struct{}{}, op(or) })
	return err
}

func (r *Root) Stat(name string) (fs.FileInfo, error) {
	return do(r, func(or *os.Root) (fs.FileInfo, error) { return or.Stat(name) })
}

func (r *Root) Lstat(name string) (fs.FileInfo, error) {
	return do(r, func(or *os.Root) (fs.FileInfo, error) { return or.Lstat(name) })
}

func (r *Root) Open(name string) (File, error) {
	return do(r, func(or *os.Root) (File, error) {
		// O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
		f, err := or.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		if !st.Mode().IsRegular() && !st.IsDir() {
			f.Close()
			return nil, &fs.PathError{Op: "open", Path: name, Err: ErrNotRegular}
		}
		return f, nil
	})
}

func (r *Root) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	return do(r, func(or *os.Root) (File, error) {
		if flag&os.O_CREATE == 0 || flag&os.O_EXCL == 0 {
			// An existing name: refuse what is not a regular file before
			// opening it (a FIFO opened for writing blocks).
			if st, err := or.Stat(name); err == nil && !st.Mode().IsRegular() {
				return nil, &fs.PathError{Op: "open", Path: name, Err: ErrNotRegular}
			}
		}
		f, err := or.OpenFile(name, flag|syscall.O_NONBLOCK, perm)
		if err != nil {
			return nil, err
		}
		return f, nil
	})
}

func (r *Root) ReadDir(name string) ([]fs.DirEntry, error) {
	return do(r, func(or *os.Root) ([]fs.DirEntry, error) {
		f, err := or.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return f.ReadDir(-1)
	})
}

func (r *Root) Mkdir(name string, perm fs.FileMode) error {
	return do0(r, func(or *os.Root) error { return or.Mkdir(name, perm) })
}

func (r *Root) MkdirAll(name string, perm fs.FileMode) error {
	return do0(r, func(or *os.Root) error { return or.MkdirAll(name, perm) })
}

func (r *Root) Remove(name string) error {
	return do0(r, func(or *os.Root) error { return or.Remove(name) })
}

func (r *Root) RemoveAll(name string) error {
	return do0(r, func(or *os.Root) error { return or.RemoveAll(name) })
}

func (r *Root) Rename(oldname, newname string) error {
	return do0(r, func(or *os.Root) error { return or.Rename(oldname, newname) })
}

func (r *Root) Chtimes(name string, atime, mtime time.Time) error {
	return do0(r, func(or *os.Root) error { return or.Chtimes(name, atime, mtime) })
}

func (r *Root) Readlink(name string) (string, error) {
	return do(r, func(or *os.Root) (string, error) { return or.Readlink(name) })
}
