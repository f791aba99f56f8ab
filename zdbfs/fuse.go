package zdbfs

import (
	"context"
	"errors"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Node is the FUSE face of an inode (go-fuse keeps one Node per inode id
// in use by the kernel; hard links share it).
type Node struct {
	gofs.Inode
	f  *FS
	in *inode
}

var (
	_ gofs.NodeLookuper      = (*Node)(nil)
	_ gofs.NodeGetattrer     = (*Node)(nil)
	_ gofs.NodeSetattrer     = (*Node)(nil)
	_ gofs.NodeCreater       = (*Node)(nil)
	_ gofs.NodeTmpfiler      = (*Node)(nil)
	_ gofs.NodeOpener        = (*Node)(nil)
	_ gofs.NodeReader        = (*Node)(nil)
	_ gofs.NodeWriter        = (*Node)(nil)
	_ gofs.NodeFlusher       = (*Node)(nil)
	_ gofs.NodeFsyncer       = (*Node)(nil)
	_ gofs.NodeReleaser      = (*Node)(nil)
	_ gofs.NodeMkdirer       = (*Node)(nil)
	_ gofs.NodeMknoder       = (*Node)(nil)
	_ gofs.NodeRmdirer       = (*Node)(nil)
	_ gofs.NodeUnlinker      = (*Node)(nil)
	_ gofs.NodeRenamer       = (*Node)(nil)
	_ gofs.NodeLinker        = (*Node)(nil)
	_ gofs.NodeSymlinker     = (*Node)(nil)
	_ gofs.NodeReadlinker    = (*Node)(nil)
	_ gofs.NodeReaddirer     = (*Node)(nil)
	_ gofs.NodeStatfser      = (*Node)(nil)
	_ gofs.NodeGetxattrer    = (*Node)(nil)
	_ gofs.NodeSetxattrer    = (*Node)(nil)
	_ gofs.NodeRemovexattrer = (*Node)(nil)
	_ gofs.NodeListxattrer   = (*Node)(nil)
	_ gofs.NodeAllocater     = (*Node)(nil)
	_ gofs.NodeLseeker       = (*Node)(nil)
	_ gofs.NodeOnForgetter   = (*Node)(nil)
)

// Root returns the root node, to pass to go-fuse's fs.Mount.
func (f *FS) Root(ctx context.Context) (*Node, error) {
	in, err := f.loadInode(ctx, RootIno)
	if err != nil {
		return nil, err
	}
	f.ref(in)
	return &Node{f: f, in: in}, nil
}

func (f *FS) errno(op string, err error) syscall.Errno {
	e := toErrno(err)
	if e == syscall.EIO {
		f.Stats.Errors.Add(1)
		f.log.Warn("zdbfs: I/O error", "op", op, "err", err)
	}
	return e
}

// child returns the go-fuse inode for in below parent.
func (n *Node) child(ctx context.Context, in *inode, out *fuse.EntryOut) *gofs.Inode {
	n.f.ref(in)
	c := &Node{f: n.f, in: in}
	ch := n.NewInode(ctx, c, gofs.StableAttr{Mode: in.fileType(), Ino: in.ino})
	if ch.Operations() != gofs.InodeEmbedder(c) {
		n.f.unref(in)
	}
	in.mu.Lock()
	n.f.fillAttr(in, &out.Attr)
	in.mu.Unlock()
	out.SetEntryTimeout(time.Second)
	out.SetAttrTimeout(time.Second)
	return ch
}

func (f *FS) fillAttr(in *inode, out *fuse.Attr) {
	a := &in.a
	out.Ino = in.ino
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Owner = fuse.Owner{Uid: a.UID, Gid: a.GID}
	out.Size = a.Size
	out.Rdev = a.Rdev
	out.Blksize = 4096
	out.Blocks = (a.Size + 511) / 512
	out.Atime, out.Atimensec = uint64(a.Atime/1e9), uint32(a.Atime%1e9)
	out.Mtime, out.Mtimensec = uint64(a.Mtime/1e9), uint32(a.Mtime%1e9)
	out.Ctime, out.Ctimensec = uint64(a.Ctime/1e9), uint32(a.Ctime%1e9)
}

func caller(ctx context.Context) (uint32, uint32) {
	if c, ok := fuse.FromContext(ctx); ok {
		return c.Uid, c.Gid
	}
	return 0, 0
}

// Lookup implements NodeLookuper.
func (n *Node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.f.Stats.Requests.Add(1)
	e, err := n.f.lookupEntry(ctx, n.in.ino, name)
	if err != nil {
		return nil, n.f.errno("lookup", err)
	}
	in, err := n.f.loadInode(ctx, e.Ino)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, syscall.EIO // an entry without its inode: damaged
		}
		return nil, n.f.errno("lookup", err)
	}
	return n.child(ctx, in, out), 0
}

// OnForget implements NodeOnForgetter.
func (n *Node) OnForget() { n.f.unref(n.in) }

// Getattr implements NodeGetattrer.
func (n *Node) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.f.Stats.Requests.Add(1)
	n.in.mu.Lock()
	defer n.in.mu.Unlock()
	n.f.fillAttr(n.in, &out.Attr)
	out.SetTimeout(time.Second)
	return 0
}

// Setattr implements NodeSetattrer: chmod, chown, truncate, utimens.
func (n *Node) Setattr(ctx context.Context, fh gofs.FileHandle, sa *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	n.f.Stats.Requests.Add(1)
	in := n.in
	in.mu.Lock()
	defer in.mu.Unlock()
	old := in.a
	now := nowNs()
	if m, ok := sa.GetMode(); ok {
		in.a.Mode = in.a.Mode&syscall.S_IFMT | m&0o7777
	}
	if u, ok := sa.GetUID(); ok {
		in.a.UID = u
	}
	if g, ok := sa.GetGID(); ok {
		in.a.GID = g
	}
	if sz, ok := sa.GetSize(); ok {
		if in.isDir() {
			return syscall.EISDIR
		}
		if !in.isReg() {
			return syscall.EINVAL
		}
		if err := n.f.truncateLocked(ctx, in, sz); err != nil {
			return n.f.errno("truncate", err)
		}
		in.a.Mtime = now
	}
	if t, ok := sa.GetATime(); ok {
		in.a.Atime = t.UnixNano()
	}
	if t, ok := sa.GetMTime(); ok {
		in.a.Mtime = t.UnixNano()
	}
	in.a.Ctime = now
	in.dirty = true
	if err := n.f.saveLocked(ctx, in); err != nil {
		if _, ok := sa.GetSize(); !ok {
			in.a = old
		}
		return n.f.errno("setattr", err)
	}
	n.f.fillAttr(in, &out.Attr)
	out.SetTimeout(time.Second)
	return 0
}

// handle is an open file.
type handle struct{ in *inode }

func (n *Node) open(h *inode) *handle {
	h.mu.Lock()
	h.opens++
	h.mu.Unlock()
	return &handle{in: h}
}

func (n *Node) newNode(ctx context.Context, name string, mode, rdev uint32, target []byte, out *fuse.EntryOut) (*gofs.Inode, *inode, syscall.Errno) {
	n.f.Stats.Requests.Add(1)
	uid, gid := caller(ctx)
	in, err := n.f.create(ctx, n.in, name, mode, uid, gid, rdev, target)
	if err != nil {
		return nil, nil, n.f.errno("create", err)
	}
	return n.child(ctx, in, out), in, 0
}

// Create implements NodeCreater.
func (n *Node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	ch, in, errno := n.newNode(ctx, name, syscall.S_IFREG|mode&0o7777, 0, nil, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, n.open(in), 0, 0
}

// Tmpfile implements NodeTmpfiler (O_TMPFILE): an inode in no directory,
// recorded as an orphan until it is linked.
func (n *Node) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	n.f.Stats.Requests.Add(1)
	f := n.f
	ino, err := f.allocIno(ctx)
	if err != nil {
		return nil, nil, 0, f.errno("tmpfile", err)
	}
	uid, gid := caller(ctx)
	n.in.mu.Lock()
	in := &inode{ino: ino, a: newAttrs(n.in, syscall.S_IFREG|mode&0o7777, uid, gid)}
	n.in.mu.Unlock()
	in.a.Nlink, in.a.Inline, in.unlinked = 0, true, true
	if err := f.addOrphan(ctx, ino); err != nil {
		return nil, nil, 0, f.errno("tmpfile", err)
	}
	if err := f.meta.Set(ctx, inodeKey(ino), encodeInode(&in.a)); err != nil {
		return nil, nil, 0, f.errno("tmpfile", err)
	}
	in.pa = in.a
	f.tmu.Lock()
	f.inodes[ino] = in
	f.tmu.Unlock()
	h := n.open(in)
	f.ref(in)
	c := &Node{f: f, in: in}
	ch := n.NewInode(ctx, c, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino})
	f.fillAttr(in, &out.Attr)
	return ch, h, 0, 0
}

// Mkdir implements NodeMkdirer.
func (n *Node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ch, _, errno := n.newNode(ctx, name, syscall.S_IFDIR|mode&0o7777, 0, nil, out)
	return ch, errno
}

// Mknod implements NodeMknoder (devices, fifos, sockets).
func (n *Node) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ch, _, errno := n.newNode(ctx, name, mode, dev, nil, out)
	return ch, errno
}

// Symlink implements NodeSymlinker.
func (n *Node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ch, _, errno := n.newNode(ctx, name, syscall.S_IFLNK|0o777, 0, []byte(target), out)
	return ch, errno
}

// Readlink implements NodeReadlinker.
func (n *Node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	n.in.mu.Lock()
	defer n.in.mu.Unlock()
	if n.in.a.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		return nil, syscall.EINVAL
	}
	return append([]byte(nil), n.in.a.Data...), 0
}

// Link implements NodeLinker.
func (n *Node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.f.Stats.Requests.Add(1)
	t, ok := target.(*Node)
	if !ok {
		return nil, syscall.EXDEV
	}
	if err := n.f.link(ctx, n.in, name, t.in); err != nil {
		return nil, n.f.errno("link", err)
	}
	return n.child(ctx, t.in, out), 0
}

// Unlink implements NodeUnlinker.
func (n *Node) Unlink(ctx context.Context, name string) syscall.Errno {
	n.f.Stats.Requests.Add(1)
	return n.f.errno("unlink", n.f.remove(ctx, n.in, name, false))
}

// Rmdir implements NodeRmdirer.
func (n *Node) Rmdir(ctx context.Context, name string) syscall.Errno {
	n.f.Stats.Requests.Add(1)
	return n.f.errno("rmdir", n.f.remove(ctx, n.in, name, true))
}

// Rename implements NodeRenamer (RENAME_NOREPLACE, RENAME_EXCHANGE).
func (n *Node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	n.f.Stats.Requests.Add(1)
	p, ok := newParent.(*Node)
	if !ok {
		return syscall.EXDEV
	}
	return n.f.errno("rename", n.f.rename(ctx, n.in, name, p.in, newName, flags))
}

// Readdir implements NodeReaddirer.
func (n *Node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	n.f.Stats.Requests.Add(1)
	es, err := n.f.listDir(ctx, n.in)
	if err != nil {
		return nil, n.f.errno("readdir", err)
	}
	out := make([]fuse.DirEntry, 0, len(es))
	for _, e := range es {
		out = append(out, fuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: e.Type})
	}
	return gofs.NewListDirStream(out), 0
}

// Open implements NodeOpener.
func (n *Node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	n.f.Stats.Requests.Add(1)
	return n.open(n.in), 0, 0
}

// Read implements NodeReader.
func (n *Node) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n.f.Stats.Requests.Add(1)
	n.in.mu.Lock()
	defer n.in.mu.Unlock()
	k, err := n.f.readLocked(ctx, n.in, dest, off)
	if err != nil {
		return nil, n.f.errno("read", err)
	}
	return fuse.ReadResultData(dest[:k]), 0
}

// Write implements NodeWriter.
func (n *Node) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	n.f.Stats.Requests.Add(1)
	n.in.mu.Lock()
	defer n.in.mu.Unlock()
	k, err := n.f.writeLocked(ctx, n.in, data, off)
	if err != nil {
		return 0, n.f.errno("write", err)
	}
	return uint32(k), 0
}

// sync flushes the file's data and record and reports any earlier
// background flush failure.
func (n *Node) sync(ctx context.Context, op string) syscall.Errno {
	n.f.Stats.Requests.Add(1)
	in := n.in
	in.mu.Lock()
	defer in.mu.Unlock()
	err := n.f.flushLocked(ctx, in)
	if err == nil && in.werr != nil {
		err = in.werr
	}
	in.werr = nil
	return n.f.errno(op, err)
}

// Flush implements NodeFlusher (close): data is stored before close returns.
func (n *Node) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	return n.sync(ctx, "flush")
}

// Fsync implements NodeFsyncer (fsync, fdatasync).
func (n *Node) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	return n.sync(ctx, "fsync")
}

// Release implements NodeReleaser: the last close of an unlinked file
// deletes it.
func (n *Node) Release(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	in := n.in
	in.mu.Lock()
	in.opens--
	purge := in.opens == 0 && in.unlinked && !in.gone
	var err error
	if purge {
		err = n.f.purge(ctx, in)
	}
	in.mu.Unlock()
	if purge && err == nil {
		err = n.f.removeOrphan(ctx, in.ino)
	}
	return n.f.errno("release", err)
}

// Allocate implements NodeAllocater (fallocate): mode 0 extends the size,
// FALLOC_FL_KEEP_SIZE alone is a no-op (blocks are stored when written),
// FALLOC_FL_PUNCH_HOLE|KEEP_SIZE zeroes the range.
func (n *Node) Allocate(ctx context.Context, fh gofs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	n.f.Stats.Requests.Add(1)
	const keepSize, punchHole = 1, 2
	in := n.in
	in.mu.Lock()
	defer in.mu.Unlock()
	var err error
	switch mode {
	case 0:
		if off+size > in.a.Size {
			err = n.f.growLocked(ctx, in, off+size)
		}
	case keepSize:
	case keepSize | punchHole:
		err = n.f.punchLocked(ctx, in, off, size)
	default:
		return syscall.EOPNOTSUPP
	}
	if err == nil && in.dirty {
		in.a.Ctime = nowNs()
		if mode != keepSize {
			in.a.Mtime = in.a.Ctime
		}
		err = n.f.flushLocked(ctx, in)
	}
	return n.f.errno("fallocate", err)
}

// Lseek implements NodeLseeker (SEEK_DATA, SEEK_HOLE).
func (n *Node) Lseek(ctx context.Context, fh gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	in := n.in
	in.mu.Lock()
	defer in.mu.Unlock()
	pos, err := n.f.seekLocked(ctx, in, off, whence)
	if err != nil {
		return 0, n.f.errno("lseek", err)
	}
	return pos, 0
}

// Statfs implements NodeStatfser: the capacity is the size= option.
func (n *Node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	const bs = 4096
	out.Bsize, out.Frsize = bs, bs
	out.Blocks = n.f.cfg.Capacity / bs
	out.Bfree, out.Bavail = out.Blocks, out.Blocks
	out.Files, out.Ffree = 1<<32, 1<<32
	out.NameLen = 255
	return 0
}

func (f *FS) xattrsLocked(ctx context.Context, in *inode) (xattrList, error) {
	if in.xok {
		return in.xs, nil
	}
	v, err := f.meta.Get(ctx, xattrKey(in.ino))
	if errors.Is(err, ErrNotFound) {
		in.xs, in.xok = nil, true
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	xs, err := decodeXattrs(v)
	if err != nil {
		return nil, err
	}
	in.xs, in.xok = xs, true
	return xs, nil
}

// Getxattr implements NodeGetxattrer.
func (n *Node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	in := n.in
	in.mu.Lock()
	defer in.mu.Unlock()
	xs, err := n.f.xattrsLocked(ctx, in)
	if err != nil {
		return 0, n.f.errno("getxattr", err)
	}
	for _, x := range xs {
		if x.Name == attr {
			if len(dest) < len(x.Value) {
				return uint32(len(x.Value)), syscall.ERANGE
			}
			return uint32(copy(dest, x.Value)), 0
		}
	}
	return 0, syscall.ENODATA
}

func (f *FS) saveXattrsLocked(ctx context.Context, in *inode, xs xattrList) error {
	var err error
	if len(xs) == 0 {
		err = f.meta.Del(ctx, xattrKey(in.ino))
	} else {
		v := encodeXattrs(xs)
		if len(v) > xattrMaxTotal {
			return syscall.ENOSPC
		}
		err = f.meta.Set(ctx, xattrKey(in.ino), v)
	}
	if err != nil {
		return err
	}
	in.xs = xs
	in.a.Ctime = nowNs()
	in.dirty = true
	return f.saveLocked(ctx, in)
}

// Setxattr implements NodeSetxattrer (XATTR_CREATE, XATTR_REPLACE).
func (n *Node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	n.f.Stats.Requests.Add(1)
	if len(attr) == 0 || len(attr) > 255 {
		return syscall.ERANGE
	}
	in := n.in
	in.mu.Lock()
	defer in.mu.Unlock()
	xs, err := n.f.xattrsLocked(ctx, in)
	if err != nil {
		return n.f.errno("setxattr", err)
	}
	xs = append(xattrList(nil), xs...)
	i := -1
	for j, x := range xs {
		if x.Name == attr {
			i = j
		}
	}
	const xattrCreate, xattrReplace = 1, 2
	switch {
	case i >= 0 && flags&xattrCreate != 0:
		return syscall.EEXIST
	case i < 0 && flags&xattrReplace != 0:
		return syscall.ENODATA
	case i >= 0:
		xs[i].Value = append([]byte(nil), data...)
	default:
		xs = append(xs, xattrPair{Name: attr, Value: append([]byte(nil), data...)})
	}
	return n.f.errno("setxattr", n.f.saveXattrsLocked(ctx, in, xs))
}

// Removexattr implements NodeRemovexattrer.
func (n *Node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	n.f.Stats.Requests.Add(1)
	in := n.in
	in.mu.Lock()
	defer in.mu.Unlock()
	xs, err := n.f.xattrsLocked(ctx, in)
	if err != nil {
		return n.f.errno("removexattr", err)
	}
	out := make(xattrList, 0, len(xs))
	for _, x := range xs {
		if x.Name != attr {
			out = append(out, x)
		}
	}
	if len(out) == len(xs) {
		return syscall.ENODATA
	}
	return n.f.errno("removexattr", n.f.saveXattrsLocked(ctx, in, out))
}

// Listxattr implements NodeListxattrer.
func (n *Node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	in := n.in
	in.mu.Lock()
	defer in.mu.Unlock()
	xs, err := n.f.xattrsLocked(ctx, in)
	if err != nil {
		return 0, n.f.errno("listxattr", err)
	}
	var b []byte
	for _, x := range xs {
		b = append(append(b, x.Name...), 0)
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}
