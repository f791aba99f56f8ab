package zdbfs

import (
	"context"
	"errors"
	"slices"
	"syscall"
)

// Directories: one record per entry (direntKey → dirent) for lookups,
// plus listing pages (pageKey) that each list up to pageMaxEntry names for
// readdir. An entry records its page, so adding or removing a name
// rewrites one entry record, one page (≤ 16 KiB) and the directory inode,
// whatever the size of the directory. New names go to the last page; a
// new page is started when it is full; an emptied page is deleted.
//
// Every function here is called with FS.mu held.

// txn collects the metadata writes of one namespace operation, applied in
// order by commit (children first, directory inodes last).
type txn struct {
	f     *FS
	ctx   context.Context
	ops   []Op
	pages map[string][]pageEntry
	saved []savedInode // inodes whose records are written by this txn
	dents []dentChange
}

type dentChange struct {
	key string
	dir uint64
	e   *dirent // nil: removed
}

func (f *FS) txn(ctx context.Context) *txn {
	return &txn{f: f, ctx: ctx, pages: map[string][]pageEntry{}}
}

func (t *txn) set(k, v []byte) { t.ops = append(t.ops, Op{Key: k, Value: v}) }
func (t *txn) del(k []byte)    { t.ops = append(t.ops, Op{Key: k, Del: true}) }

// saveInode queues in's record as recordView gives it: a regular file's
// record never claims data that is not stored yet.
func (t *txn) saveInode(in *inode) {
	v := in.recordView()
	t.set(inodeKey(in.ino), encodeInode(&v))
	t.saved = append(t.saved, savedInode{in, v})
}

type savedInode struct {
	in *inode
	v  attrs
}

func (t *txn) commit() error {
	if err := t.f.meta.Apply(t.ctx, t.ops); err != nil {
		// Some of the writes may have been applied: forget what the
		// caches knew about the names and pages involved.
		for k := range t.pages {
			t.f.pages.forget(k)
		}
		for _, d := range t.dents {
			t.f.dents.forget(d.key)
		}
		return err
	}
	for _, sv := range t.saved {
		sv.in.pa = sv.v
		sv.in.gen++
	}
	for k, es := range t.pages {
		if len(es) == 0 {
			t.f.pages.forget(k)
		} else {
			t.f.pages.put(k, es)
		}
	}
	for _, d := range t.dents {
		t.f.dents.set(d.key, d.e)
		if d.e != nil {
			t.f.fresh.named(d.dir, d.e.Name)
		}
	}
	return nil
}

func (t *txn) page(dir uint64, p uint32) ([]pageEntry, error) {
	k := string(pageKey(dir, p))
	if es, ok := t.pages[k]; ok {
		return es, nil
	}
	if es, ok := t.f.pages.get(k); ok {
		return es, nil
	}
	v, err := t.f.meta.Get(t.ctx, []byte(k))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodePage(v)
}

func (t *txn) setPage(dir uint64, p uint32, es []pageEntry) {
	k := pageKey(dir, p)
	t.pages[string(k)] = es
	if len(es) == 0 {
		t.del(k)
	} else {
		t.set(k, encodePage(es))
	}
}

func (t *txn) setDirent(dir uint64, e *dirent) {
	k := direntKey(dir, e.Name)
	t.set(k, encodeDirent(e))
	t.dents = append(t.dents, dentChange{key: string(k), dir: dir, e: e})
}

// addEntry lists name in dir and writes its entry record.
func (t *txn) addEntry(dir *inode, name string, ino uint64, typ uint32) error {
	pe := pageEntry{Name: name, Ino: ino, Type: typ}
	page := dir.a.Pages
	var es []pageEntry
	if dir.a.Pages > 0 {
		last, err := t.page(dir.ino, dir.a.Pages-1)
		if err != nil {
			return err
		}
		if len(last) < pageMaxEntry && pageBytes(last)+13+len(name) <= pageMaxBytes {
			page, es = dir.a.Pages-1, last
		}
	}
	if page == dir.a.Pages {
		dir.a.Pages++
	}
	t.setPage(dir.ino, page, append(slices.Clone(es), pe))
	t.setDirent(dir.ino, &dirent{Ino: ino, Type: typ, Page: page, Name: name})
	dir.a.Entries++
	return nil
}

// removeEntry unlists e from dir and deletes its entry record.
func (t *txn) removeEntry(dir *inode, e *dirent) error {
	es, err := t.page(dir.ino, e.Page)
	if err != nil {
		return err
	}
	es = slices.DeleteFunc(slices.Clone(es), func(p pageEntry) bool { return p.Name == e.Name })
	t.setPage(dir.ino, e.Page, es)
	k := direntKey(dir.ino, e.Name)
	t.del(k)
	t.dents = append(t.dents, dentChange{key: string(k), dir: dir.ino})
	if dir.a.Entries > 0 {
		dir.a.Entries--
	}
	return nil
}

// retarget points the existing entry e of dir at another inode.
func (t *txn) retarget(dir *inode, e *dirent, ino uint64, typ uint32) error {
	es, err := t.page(dir.ino, e.Page)
	if err != nil {
		return err
	}
	es = slices.Clone(es)
	for i := range es {
		if es[i].Name == e.Name {
			es[i].Ino, es[i].Type = ino, typ
		}
	}
	t.setPage(dir.ino, e.Page, es)
	t.setDirent(dir.ino, &dirent{Ino: ino, Type: typ, Page: e.Page, Name: e.Name})
	return nil
}

// lookupEntry returns the entry name of dir, or ENOENT.
func (f *FS) lookupEntry(ctx context.Context, dir uint64, name string) (*dirent, error) {
	if len(name) > 255 {
		return nil, syscall.ENAMETOOLONG
	}
	key := direntKey(dir, name)
	e, ok := f.dents.get(string(key))
	if !ok && f.fresh.absent(dir, name) {
		ok = true // a directory of this mount that never held the name
	}
	if !ok {
		seq := f.dents.snapshot()
		v, err := f.meta.Get(ctx, key)
		switch {
		case errors.Is(err, ErrNotFound):
			e = nil
		case err != nil:
			return nil, err
		default:
			if e, err = decodeDirent(v); err != nil {
				return nil, err
			}
		}
		f.dents.fill(string(key), e, seq)
	}
	if e == nil || e.Name != name {
		return nil, syscall.ENOENT // hash collision of a long name
	}
	return e, nil
}

// newAttrs describes a new inode created by caller in dir.
func newAttrs(dir *inode, mode, uid, gid uint32) attrs {
	t := nowNs()
	a := attrs{Mode: mode, UID: uid, GID: gid, Nlink: 1, Atime: t, Mtime: t, Ctime: t}
	if dir.a.Mode&syscall.S_ISGID != 0 {
		a.GID = dir.a.GID
		if mode&syscall.S_IFMT == syscall.S_IFDIR {
			a.Mode |= syscall.S_ISGID
		}
	}
	return a
}

// create makes a new inode named name in dir: files, directories,
// symlinks (target), devices and fifos (rdev).
func (f *FS) create(ctx context.Context, dir *inode, name string, mode, uid, gid, rdev uint32, target []byte) (*inode, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(name) > 255 {
		return nil, syscall.ENAMETOOLONG
	}
	if _, err := f.lookupEntry(ctx, dir.ino, name); err == nil {
		return nil, syscall.EEXIST
	} else if !errors.Is(err, syscall.ENOENT) {
		return nil, err
	}
	ino, err := f.allocIno(ctx)
	if err != nil {
		return nil, err
	}
	dir.mu.Lock()
	defer dir.mu.Unlock()
	if dir.a.Nlink == 0 {
		return nil, syscall.ENOENT // removed directory
	}
	in := &inode{ino: ino, a: newAttrs(dir, mode, uid, gid), xok: true} // no xattrs yet
	in.a.Rdev = rdev
	if target != nil {
		in.a.Data = target
		in.a.Size = uint64(len(target))
	}
	if in.isReg() {
		in.a.Inline = true
	}
	old := dir.a
	t := f.txn(ctx)
	isDir := in.isDir()
	if isDir {
		in.a.Nlink = 2
		dir.a.Nlink++
	}
	t.saveInode(in)
	if err := t.addEntry(dir, name, ino, in.fileType()); err != nil {
		dir.a = old
		return nil, err
	}
	dir.a.Mtime, dir.a.Ctime = in.a.Mtime, in.a.Mtime
	t.saveInode(dir)
	if err := t.commit(); err != nil {
		dir.a = old
		return nil, err
	}
	if isDir {
		f.fresh.added(ino)
	}
	f.tmu.Lock()
	f.inodes[ino] = in
	f.tmu.Unlock()
	return in, nil
}

// link adds name in dir for the existing inode in.
func (f *FS) link(ctx context.Context, dir *inode, name string, in *inode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.lookupEntry(ctx, dir.ino, name); err == nil {
		return syscall.EEXIST
	} else if !errors.Is(err, syscall.ENOENT) {
		return err
	}
	dir.mu.Lock()
	defer dir.mu.Unlock()
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.isDir() {
		return syscall.EPERM
	}
	if in.gone {
		return syscall.ENOENT
	}
	olddir, oldin := dir.a, in.a
	t := f.txn(ctx)
	in.a.Nlink++
	in.a.Ctime = nowNs()
	t.saveInode(in)
	if err := t.addEntry(dir, name, in.ino, in.fileType()); err != nil {
		dir.a, in.a = olddir, oldin
		return err
	}
	dir.a.Mtime, dir.a.Ctime = in.a.Ctime, in.a.Ctime
	t.saveInode(dir)
	if err := t.commit(); err != nil {
		dir.a, in.a = olddir, oldin
		return err
	}
	if in.unlinked { // linked back from O_TMPFILE or /proc/self/fd
		in.unlinked = false
		f.removeOrphan(ctx, in.ino)
	}
	return nil
}

// remove unlinks name from dir (rmdir when dirOnly).
func (f *FS) remove(ctx context.Context, dir *inode, name string, rmdir bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, err := f.lookupEntry(ctx, dir.ino, name)
	if err != nil {
		return err
	}
	child, err := f.loadInode(ctx, e.Ino)
	if err != nil {
		return err
	}
	dir.mu.Lock()
	defer dir.mu.Unlock()
	child.mu.Lock()
	defer child.mu.Unlock()
	if rmdir {
		if !child.isDir() {
			return syscall.ENOTDIR
		}
		if child.a.Entries > 0 {
			return syscall.ENOTEMPTY
		}
	} else if child.isDir() {
		return syscall.EISDIR
	}
	old := dir.a
	t := f.txn(ctx)
	if err := t.removeEntry(dir, e); err != nil {
		return err
	}
	if child.isDir() {
		dir.a.Nlink--
	}
	dir.a.Mtime, dir.a.Ctime = nowNs(), nowNs()
	t.saveInode(dir)
	if err := t.commit(); err != nil {
		dir.a = old
		return err
	}
	return f.dropLinkLocked(ctx, child)
}

const (
	renameNoReplace = 1
	renameExchange  = 2
)

// rename moves src/name to dst/newName with the semantics of renameat2.
func (f *FS) rename(ctx context.Context, src *inode, name string, dst *inode, newName string, flags uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if flags&^(renameNoReplace|renameExchange) != 0 || flags == renameNoReplace|renameExchange {
		return syscall.EINVAL
	}
	if len(newName) > 255 {
		return syscall.ENAMETOOLONG
	}
	se, err := f.lookupEntry(ctx, src.ino, name)
	if err != nil {
		return err
	}
	de, err := f.lookupEntry(ctx, dst.ino, newName)
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		return err
	}
	if err != nil {
		de = nil
	}
	if flags&renameNoReplace != 0 && de != nil {
		return syscall.EEXIST
	}
	if flags&renameExchange != 0 && de == nil {
		return syscall.ENOENT
	}
	if de != nil && de.Ino == se.Ino {
		return nil // two names of one inode: nothing to do
	}
	sin, err := f.loadInode(ctx, se.Ino)
	if err != nil {
		return err
	}
	var din *inode
	if de != nil {
		if din, err = f.loadInode(ctx, de.Ino); err != nil {
			return err
		}
	}
	lock := []*inode{src}
	if dst != src {
		lock = append(lock, dst)
	}
	lock = append(lock, sin)
	if din != nil {
		lock = append(lock, din)
	}
	for _, in := range lock {
		in.mu.Lock()
		defer in.mu.Unlock()
	}
	if de != nil && flags&renameExchange == 0 {
		switch {
		case din.isDir() && !sin.isDir():
			return syscall.EISDIR
		case !din.isDir() && sin.isDir():
			return syscall.ENOTDIR
		case din.isDir() && din.a.Entries > 0:
			return syscall.ENOTEMPTY
		}
	}
	snap := map[*inode]attrs{}
	for _, in := range lock {
		snap[in] = in.a
	}
	restore := func() {
		for in, a := range snap {
			in.a = a
		}
	}
	now := nowNs()
	t := f.txn(ctx)
	sDir := sin.isDir()
	switch {
	case flags&renameExchange != 0:
		if err := t.retarget(src, se, din.ino, din.fileType()); err != nil {
			return err
		}
		if err := t.retarget(dst, de, sin.ino, sin.fileType()); err != nil {
			return err
		}
		if src != dst && sDir != din.isDir() {
			if sDir {
				src.a.Nlink--
				dst.a.Nlink++
			} else {
				src.a.Nlink++
				dst.a.Nlink--
			}
		}
		din.a.Ctime = now
	case de != nil:
		if err := t.retarget(dst, de, sin.ino, sin.fileType()); err != nil {
			return err
		}
		if err := t.removeEntry(src, se); err != nil {
			return err
		}
		if sDir {
			src.a.Nlink-- // dst loses the replaced directory and gains this one
		}
	default:
		if err := t.addEntry(dst, newName, sin.ino, sin.fileType()); err != nil {
			restore()
			return err
		}
		if err := t.removeEntry(src, se); err != nil {
			restore()
			return err
		}
		if sDir && src != dst {
			src.a.Nlink--
			dst.a.Nlink++
		}
	}
	sin.a.Ctime = now
	src.a.Mtime, src.a.Ctime = now, now
	dst.a.Mtime, dst.a.Ctime = now, now
	for _, in := range []*inode{sin, din} {
		if in == nil || (in == din && flags&renameExchange == 0) {
			continue
		}
		t.saveInode(in)
	}
	t.saveInode(src)
	if dst != src {
		t.saveInode(dst)
	}
	if err := t.commit(); err != nil {
		restore()
		return err
	}
	if de != nil && flags&renameExchange == 0 {
		return f.dropLinkLocked(ctx, din)
	}
	return nil
}
