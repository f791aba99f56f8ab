package zdbfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
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

// detach keeps the request's values (the caller's uid and gid) but not
// its cancellation. The kernel interrupts a request whose caller got a
// signal — Go programs get SIGURG all the time — and go-fuse then cancels
// its context; a write to zdb cut short that way would fail with EIO, or
// leave a half-done operation. Every operation runs to completion
// instead, bounded by the store's own timeouts.
func detach(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

func (f *FS) errno(op string, err error) syscall.Errno {
	e := toErrno(err)
	if e == syscall.EIO {
		f.Stats.Errors.Add(1)
		f.log.Warn("I/O error", "op", op, "err", err)
	}
	return e
}

// child returns the go-fuse inode for in below parent.
func (n *Node) child(ctx context.Context, in *inode, out *fuse.EntryOut) *gofs.Inode {
	ctx = detach(ctx)
	n.f.ref(in)
	c := &Node{f: n.f, in: in}
	ch := n.NewInode(ctx, c, gofs.StableAttr{Mode: in.fileType(), Ino: in.ino})
	if ch.Operations() != gofs.InodeEmbedder(c) {
		n.f.unref(in)
	} else {
		n.f.tmu.Lock()
		in.node = c
		n.f.tmu.Unlock()
	}
	in.touch()
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
	out.Blocks = f.allocated(in) / 512
	out.Atime, out.Atimensec = uint64(a.Atime/1e9), uint32(a.Atime%1e9)
	out.Mtime, out.Mtimensec = uint64(a.Mtime/1e9), uint32(a.Mtime%1e9)
	out.Ctime, out.Ctimensec = uint64(a.Ctime/1e9), uint32(a.Ctime%1e9)
}

// allocated is what st_blocks reports, in bytes: for a regular file the
// bytes stored in the data namespace (holes take nothing), in 4 KiB
// units, plus its dirty blocks not yet stored (a file just written
// would otherwise show no blocks, which tools such as tar take for all
// holes); the content of an inline file, a symlink's target. The caller
// holds in.mu.
func (f *FS) allocated(in *inode) uint64 {
	a := &in.a
	round := func(n uint64) uint64 { return (n + 4095) &^ 4095 }
	if !in.isReg() || a.Inline && !in.dirty {
		return round(a.Size)
	}
	n := round(a.Alloc)
	if d := f.cache.dirtyCount(in.ino); d > 0 || in.dirty {
		n += uint64(d) * BlockSize
		if a.Inline || in.pa.Inline {
			n += round(min(a.Size, InlineMax))
		}
	}
	return min(n, round(a.Size))
}

// killPriv is what a write, a truncate or a chown does to a regular
// file's mode, by the rules of Linux filesystems (should_remove_suid and
// setattr_should_drop_sgid): set-user-id goes, and set-group-id when the
// group may execute or the caller is not in the file's group (oldGID);
// without group execute, set-group-id marks mandatory locking and is kept
// for a member of the group. Root (CAP_FSETID, approximated by uid 0)
// keeps both on a write or a truncate; a chown drops them for root too.
// The kernel leaves this to zdbfs (CAP_HANDLE_KILLPRIV_V2, see mount.go).
func killPriv(ctx context.Context, mode, oldGID uint32, chown bool) uint32 {
	if mode&syscall.S_IFMT != syscall.S_IFREG || mode&(syscall.S_ISUID|syscall.S_ISGID) == 0 {
		return mode
	}
	c, _ := fuse.FromContext(ctx)
	root := c == nil || c.Uid == 0
	if root && !chown {
		return mode
	}
	mode &^= syscall.S_ISUID
	if mode&syscall.S_ISGID != 0 && (mode&syscall.S_IXGRP != 0 || !root && !inGroup(c, oldGID)) {
		mode &^= syscall.S_ISGID
	}
	return mode
}

// inGroup reports whether the caller of a request belongs to group gid:
// its group, or one of its supplementary groups (read from /proc, as the
// request does not carry them).
func inGroup(c *fuse.Caller, gid uint32) bool {
	if c.Gid == gid {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.Pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Groups:"); ok {
			for _, g := range strings.Fields(rest) {
				if n, err := strconv.ParseUint(g, 10, 32); err == nil && uint32(n) == gid {
					return true
				}
			}
			return false
		}
	}
	return false
}

func caller(ctx context.Context) (uint32, uint32) {
	if c, ok := fuse.FromContext(ctx); ok {
		return c.Uid, c.Gid
	}
	return 0, 0
}

// Lookup implements NodeLookuper.
func (n *Node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ctx = detach(ctx)
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
	n.in.touch()
	n.in.mu.Lock()
	defer n.in.mu.Unlock()
	n.f.fillAttr(n.in, &out.Attr)
	out.SetTimeout(time.Second)
	return 0
}

// Setattr implements NodeSetattrer: chmod, chown, truncate, utimens.
func (n *Node) Setattr(ctx context.Context, fh gofs.FileHandle, sa *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	ctx = detach(ctx)
	n.f.Stats.Requests.Add(1)
	in := n.in
	if _, ok := sa.GetSize(); ok {
		in.gate.Lock() // no page pushes across a size change
		defer in.gate.Unlock()
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	old := in.a
	now := nowNs()
	_, chown := sa.GetUID()
	if _, ok := sa.GetGID(); ok {
		chown = true
	}
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
	if sa.Valid&fuse.FATTR_KILL_SUIDGID != 0 {
		in.a.Mode = killPriv(ctx, in.a.Mode, old.GID, chown)
	}
	if t, ok := sa.GetATime(); ok {
		in.a.Atime = t.UnixNano()
	}
	if t, ok := sa.GetMTime(); ok {
		in.a.Mtime = t.UnixNano()
	}
	in.a.Ctime = now
	var err error
	if _, ok := sa.GetSize(); ok {
		// A size change is written like data, at once: the blocks past
		// the new end are already deleted.
		in.dirty = true
		if err = n.f.flushLocked(ctx, in); err == nil {
			err = n.f.mlog.Flush(ctx)
		}
	} else if err = n.f.saveLocked(ctx, in); err != nil {
		in.a = old
	}
	if err != nil {
		return n.f.errno("setattr", err)
	}
	n.f.fillAttr(in, &out.Attr)
	out.SetTimeout(time.Second)
	return 0
}

// handle is an open file.
type handle struct {
	in    *inode
	write bool // opened for writing (counted in inode.writers)
}

func (n *Node) open(h *inode, write bool) *handle {
	h.touch()
	if write {
		h.gate.Lock() // no page pushes while a writer appears (see push)
		defer h.gate.Unlock()
	}
	h.mu.Lock()
	h.opens++
	if write {
		h.writers++
	}
	h.mu.Unlock()
	return &handle{in: h, write: write}
}

func writeFlags(flags uint32) bool { return flags&syscall.O_ACCMODE != syscall.O_RDONLY }

func (n *Node) newNode(ctx context.Context, name string, mode, rdev uint32, target []byte, out *fuse.EntryOut) (*gofs.Inode, *inode, syscall.Errno) {
	ctx = detach(ctx)
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
	ctx = detach(ctx)
	ch, in, errno := n.newNode(ctx, name, syscall.S_IFREG|mode&0o7777, 0, nil, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, n.open(in, true), n.openFlags(true), 0
}

// Tmpfile implements NodeTmpfiler (O_TMPFILE): an inode in no directory,
// recorded as an orphan until it is linked.
func (n *Node) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	ctx = detach(ctx)
	n.f.Stats.Requests.Add(1)
	f := n.f
	ino, err := f.allocIno(ctx)
	if err != nil {
		return nil, nil, 0, f.errno("tmpfile", err)
	}
	uid, gid := caller(ctx)
	n.in.mu.Lock()
	in := &inode{ino: ino, a: newAttrs(n.in, syscall.S_IFREG|mode&0o7777, uid, gid), xok: true}
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
	h := n.open(in, true)
	f.ref(in)
	c := &Node{f: f, in: in}
	ch := n.NewInode(ctx, c, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino})
	f.fillAttr(in, &out.Attr)
	return ch, h, n.openFlags(true), 0
}

// Mkdir implements NodeMkdirer.
func (n *Node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ctx = detach(ctx)
	ch, _, errno := n.newNode(ctx, name, syscall.S_IFDIR|mode&0o7777, 0, nil, out)
	return ch, errno
}

// Mknod implements NodeMknoder (devices, fifos, sockets).
func (n *Node) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ctx = detach(ctx)
	ch, _, errno := n.newNode(ctx, name, mode, dev, nil, out)
	return ch, errno
}

// Symlink implements NodeSymlinker.
func (n *Node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ctx = detach(ctx)
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
	ctx = detach(ctx)
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
	ctx = detach(ctx)
	n.f.Stats.Requests.Add(1)
	return n.f.errno("unlink", n.f.remove(ctx, n.in, name, false))
}

// Rmdir implements NodeRmdirer.
func (n *Node) Rmdir(ctx context.Context, name string) syscall.Errno {
	ctx = detach(ctx)
	n.f.Stats.Requests.Add(1)
	return n.f.errno("rmdir", n.f.remove(ctx, n.in, name, true))
}

// Rename implements NodeRenamer (RENAME_NOREPLACE, RENAME_EXCHANGE).
func (n *Node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	ctx = detach(ctx)
	n.f.Stats.Requests.Add(1)
	p, ok := newParent.(*Node)
	if !ok {
		return syscall.EXDEV
	}
	return n.f.errno("rename", n.f.rename(ctx, n.in, name, p.in, newName, flags))
}

// Readdir implements NodeReaddirer.
func (n *Node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	ctx = detach(ctx)
	n.f.Stats.Requests.Add(1)
	n.in.mu.Lock()
	pages := n.in.a.Pages
	n.in.mu.Unlock()
	s := &dirStream{f: n.f, ctx: ctx, dir: n.in.ino, pages: pages}
	if err := s.load(); err != nil {
		return nil, n.f.errno("readdir", err)
	}
	return s, 0
}

// dirStream lists a directory a few listing pages at a time, so that the
// memory of a listing does not grow with the directory.
type dirStream struct {
	f     *FS
	ctx   context.Context
	dir   uint64
	pages uint32 // listing pages when the directory was opened
	next  uint32 // next page to read
	buf   []dirPos
	errno syscall.Errno
}

// dirPos is an entry with its position: page<<16 | (index in page + 1),
// the offset the kernel gives back to continue after it.
type dirPos struct {
	pageEntry
	off uint64
}

const dirBatch = 16 // listing pages per GetMany (up to 4096 names)

func (s *dirStream) load() error {
	for len(s.buf) == 0 && s.next < s.pages {
		k := min(dirBatch, s.pages-s.next)
		keys := make([][]byte, k)
		for i := range k {
			keys[i] = pageKey(s.dir, s.next+i)
		}
		vs, err := s.f.meta.GetMany(s.ctx, keys)
		if err != nil {
			return err
		}
		for i, v := range vs {
			if v == nil {
				continue // an emptied page
			}
			es, err := decodePage(v)
			if err != nil {
				return err
			}
			for j, e := range es {
				s.buf = append(s.buf, dirPos{e, uint64(s.next+uint32(i))<<16 | uint64(j+1)})
			}
		}
		s.next += k
	}
	return nil
}

// Seekdir implements gofs.FileSeekdirer: off is 0 or an offset Next gave.
func (s *dirStream) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	s.buf, s.errno = nil, 0
	s.next = uint32(off >> 16)
	skip := int(off & 0xffff)
	if err := s.load(); err != nil {
		return s.f.errno("seekdir", err)
	}
	for len(s.buf) > 0 && skip > 0 && s.buf[0].off>>16 == off>>16 {
		s.buf = s.buf[1:]
		skip--
	}
	return 0
}

// HasNext implements gofs.DirStream.
func (s *dirStream) HasNext() bool {
	if s.errno == 0 {
		if err := s.load(); err != nil {
			s.errno = s.f.errno("readdir", err)
		}
	}
	return len(s.buf) > 0 || s.errno != 0
}

// Next implements gofs.DirStream.
func (s *dirStream) Next() (fuse.DirEntry, syscall.Errno) {
	if len(s.buf) == 0 {
		return fuse.DirEntry{}, s.errno
	}
	e := s.buf[0]
	s.buf = s.buf[1:]
	return fuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: e.Type, Off: e.off}, 0
}

// Close implements gofs.DirStream.
func (s *dirStream) Close() {}

// Open implements NodeOpener.
func (n *Node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	n.f.Stats.Requests.Add(1)
	w := writeFlags(flags)
	return n.open(n.in, w), n.openFlags(w), 0
}

// Read implements NodeReader.
func (n *Node) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	ctx = detach(ctx)
	n.f.Stats.Requests.Add(1)
	vec, err := n.f.read(ctx, n, dest, off)
	if err != nil {
		return nil, n.f.errno("read", err)
	}
	// The cached blocks' own bytes, sent with one writev (see lendBlocks).
	return fuse.ReadResultVector(vec), 0
}

// Write implements NodeWriter.
func (n *Node) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	ctx = detach(ctx)
	n.f.Stats.Requests.Add(1)
	n.in.mu.Lock()
	defer n.in.mu.Unlock()
	k, err := n.f.writeLocked(ctx, n.in, data, off)
	if err != nil {
		return 0, n.f.errno("write", err)
	}
	n.in.a.Mode = killPriv(ctx, n.in.a.Mode, n.in.a.GID, false)
	return uint32(k), 0
}

// sync flushes the file's data and record and reports any earlier
// background flush failure.
func (n *Node) sync(ctx context.Context, op string) syscall.Errno {
	ctx = detach(ctx)
	n.f.Stats.Requests.Add(1)
	in := n.in
	in.mu.Lock()
	defer in.mu.Unlock()
	err := n.f.flushLocked(ctx, in)
	if err == nil && in.werr != nil {
		err = in.werr
	}
	in.werr = nil
	if err == nil {
		// Every metadata change made before this returns is in zdb too:
		// the names leading to the file, its attributes.
		err = n.f.mlog.Flush(ctx)
	}
	return n.f.errno(op, err)
}

// openFlags are the FOPEN flags of a new handle. A read-only handle has
// nothing to store at close, and without SyncClose neither has a writer
// (Release starts the background flush), so the kernel is told not to
// send FLUSH for them: one round trip less per close.
func (n *Node) openFlags(write bool) uint32 {
	if write && n.f.cfg.SyncClose {
		return 0
	}
	return fuse.FOPEN_NOFLUSH
}

// Flush implements NodeFlusher (close). With SyncClose, the data and the
// metadata before it are stored before close returns. Otherwise the
// kernel does not send FLUSH (openFlags) unless it predates
// FOPEN_NOFLUSH; then an earlier failure to store is reported here and
// Release starts the flush.
func (n *Node) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	ctx = detach(ctx)
	if h, ok := fh.(*handle); ok && !h.write {
		return 0
	}
	if n.f.cfg.SyncClose {
		return n.sync(ctx, "flush")
	}
	n.in.mu.Lock()
	err := n.in.werr
	n.in.werr = nil
	n.in.mu.Unlock()
	return n.f.errno("flush", err)
}

// Fsync implements NodeFsyncer (fsync, fdatasync, and fsync of a
// directory). An fsync of the mount's root directory stores everything,
// as syncfs would: Linux sends FUSE_SYNCFS to virtiofs servers only, so
// syncfs(2) and sync -f never reach zdbfs, and `sync MOUNTPOINT` (an
// fsync of the root) is the way to flush the whole filesystem short of
// unmounting it. The kernel holds the root directory's lock meanwhile, so
// names in the root cannot change until it returns.
func (n *Node) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	ctx = detach(ctx)
	if n.in.ino == RootIno {
		n.f.Stats.Requests.Add(1)
		return n.f.errno("sync", n.f.SyncAll(ctx))
	}
	return n.sync(ctx, "fsync")
}

// Release implements NodeReleaser: the last close of an unlinked file
// deletes it.
func (n *Node) Release(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	ctx = detach(ctx)
	in := n.in
	in.mu.Lock()
	in.opens--
	wrote := false
	if h, ok := fh.(*handle); ok && h.write {
		in.writers--
		wrote = in.writers == 0 && !n.f.cfg.SyncClose && !in.gone && (in.dirty || n.f.cache.hasDirty(in.ino))
	}
	purge := in.opens == 0 && in.unlinked && !in.gone
	var err error
	if purge {
		err = n.f.purge(ctx, in)
		wrote = false
	}
	in.mu.Unlock()
	if purge && err == nil {
		err = n.f.removeOrphan(ctx, in.ino)
	}
	if wrote {
		// The last writer is gone: store the file in the background
		// (closeLoop), or here when the queue is full.
		select {
		case n.f.closeq <- in:
		default:
			// Queue full: flush here. The kernel ignores what RELEASE
			// answers, so a failure stays with the file (in.werr) for its
			// next write or fsync.
			in.mu.Lock()
			n.f.flushLocked(ctx, in)
			in.mu.Unlock()
		}
	}
	return n.f.errno("release", err)
}

// Allocate implements NodeAllocater (fallocate): mode 0 extends the size,
// FALLOC_FL_KEEP_SIZE alone is a no-op (blocks are stored when written),
// FALLOC_FL_PUNCH_HOLE|KEEP_SIZE zeroes the range.
func (n *Node) Allocate(ctx context.Context, fh gofs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	ctx = detach(ctx)
	n.f.Stats.Requests.Add(1)
	const keepSize, punchHole = 1, 2
	in := n.in
	in.gate.Lock()
	defer in.gate.Unlock()
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
	ctx = detach(ctx)
	in := n.in
	in.mu.Lock()
	defer in.mu.Unlock()
	pos, err := n.f.seekLocked(ctx, in, off, whence)
	if err != nil {
		return 0, n.f.errno("lseek", err)
	}
	return pos, 0
}

// Statfs implements NodeStatfser: the bytes zdb holds for both
// namespaces, and what they can still take (space.go), capped by the
// size= option when given. When zdb cannot tell (a server without the
// NSINFO fields), the size= option (or 10 GiB) is shown as free.
func (n *Node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	ctx = detach(ctx)
	n.f.Stats.Requests.Add(1)
	const bs = 4096
	used, free, err := n.f.usage(ctx)
	if err != nil {
		if !errors.Is(err, errors.ErrUnsupported) {
			return n.f.errno("statfs", err)
		}
		used, free = 0, max(n.f.cfg.Capacity, 10<<30)
	}
	total := used + free
	if c := n.f.cfg.Capacity; c > 0 && c < total {
		total, free = c, c-min(c, used)
	}
	out.Bsize, out.Frsize = bs, bs
	out.Blocks = (total + bs - 1) / bs
	out.Bfree = free / bs
	out.Bavail = out.Bfree
	n.f.amu.Lock()
	inodes := n.f.nextIno
	n.f.amu.Unlock()
	out.Files, out.Ffree = 1<<32, 1<<32-min(inodes, 1<<32)
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

// aclXattr reports whether name is a POSIX ACL attribute. zdbfs has no
// POSIX ACLs: the kernel enforces them only for a server that asks for
// FUSE_POSIX_ACL, and then leaves the server to keep mode and ACL in step
// and to inherit default ACLs. Stored as plain xattrs, they were shown
// (ls: "+") and changed nothing, and cp -p/-a, whose ACL copy then
// "succeeded", left files at the restrictive mode it creates them with.
// So their xattrs are refused with EOPNOTSUPP, as by a filesystem mounted
// without ACL support: cp falls back to chmod, setfacl reports it.
// Attributes of that name stored by earlier versions are hidden.
func aclXattr(name string) bool {
	return name == "system.posix_acl_access" || name == "system.posix_acl_default"
}

// Getxattr implements NodeGetxattrer.
func (n *Node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	ctx = detach(ctx)
	if aclXattr(attr) {
		return 0, syscall.EOPNOTSUPP
	}
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
	ctx = detach(ctx)
	n.f.Stats.Requests.Add(1)
	if len(attr) == 0 || len(attr) > 255 {
		return syscall.ERANGE
	}
	if aclXattr(attr) {
		return syscall.EOPNOTSUPP
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
	ctx = detach(ctx)
	n.f.Stats.Requests.Add(1)
	if aclXattr(attr) {
		return syscall.EOPNOTSUPP
	}
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
	ctx = detach(ctx)
	in := n.in
	in.mu.Lock()
	defer in.mu.Unlock()
	xs, err := n.f.xattrsLocked(ctx, in)
	if err != nil {
		return 0, n.f.errno("listxattr", err)
	}
	var b []byte
	for _, x := range xs {
		if !aclXattr(x.Name) {
			b = append(append(b, x.Name...), 0)
		}
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}
