package zdbfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// MountOptions are the FUSE side of a mount.
type MountOptions struct {
	FSName     string   // source shown in /proc/mounts (default "zdbfs")
	AllowOther bool     // allow_other
	ReadOnly   bool     // ro
	Options    []string // more -o options passed to the kernel
	Debug      bool     // log every FUSE request
	// ReadAhead is the kernel's readahead window for the mount, in bytes
	// (default DefaultReadAhead; negative: leave the kernel's default).
	// FUSE starts at 128 KiB, which caps sequential reads at 128 KiB
	// requests; a larger window means fewer, larger READs and more of
	// them in flight. Setting it needs root (it is a sysfs knob); as a
	// user the kernel's default stays.
	ReadAhead int
	// CloseTimeout bounds a clean unmount's final flush (default
	// DefaultCloseTimeout): when zdb does not answer within it, the
	// unmount gives up, reports what failed and the process can exit;
	// what was not stored is lost as in a crash (fsync'ed data is not).
	CloseTimeout time.Duration

	// Kernel caching, for measuring what each costs or saves
	// (bench/zdbfsfloor.sh); the defaults are the measured choice.
	// EntryTimeout and AttrTimeout are how long the kernel trusts a name
	// and an inode's attributes (default DefaultCacheTimeout; zdbfs is the
	// only writer of its namespaces, the lease makes sure, and every
	// change goes through the kernel). NegativeTimeout caches "no such
	// name" (default 0: not cached). NoKillPriv turns off
	// FUSE_HANDLE_KILLPRIV_V2.
	EntryTimeout, AttrTimeout, NegativeTimeout time.Duration
	NoKillPriv                                 bool
}

// DefaultCacheTimeout is the kernel's entry and attribute timeout.
const DefaultCacheTimeout = time.Second

// DefaultCloseTimeout is how long an unmount waits for zdb at most.
const DefaultCloseTimeout = time.Minute

// DefaultReadAhead is the readahead window zdbfs asks for: with it a
// cold sequential read of 1 GiB took 1.26-1.29 s instead of 1.68 s on the
// benchmark machine (docs/benchmarks.md).
const DefaultReadAhead = 4 << 20

// Mount is a mounted filesystem.
type Mount struct {
	FS      *FS
	Dir     string
	server  *fuse.Server
	timeout time.Duration // CloseTimeout
	once    sync.Once
	err     error
}

// ErrNoFusermount is returned when an unprivileged user has no
// fusermount3 (or fusermount) helper on PATH to mount with.
var ErrNoFusermount = errors.New("mounting as a non-root user needs the setuid helper fusermount3 " +
	"(Debian package fuse3) on PATH, and it was not found")

// CheckMountHelper reports whether this process can mount: root mounts
// directly; any other user needs fusermount3 (or fusermount) on PATH.
func CheckMountHelper() error {
	if os.Geteuid() == 0 {
		return nil
	}
	found := false
	for _, bin := range []string{"fusermount3", "fusermount"} {
		if _, err := exec.LookPath(bin); err == nil {
			found = true
			break
		}
	}
	if !found {
		return fmt.Errorf("uid %d: %w", os.Geteuid(), ErrNoFusermount)
	}
	// fusermount3 opens /dev/fuse with the user's rights.
	if err := syscall.Access("/dev/fuse", 6); err != nil {
		return fmt.Errorf("uid %d: /dev/fuse is not readable and writable by this user (%v): "+
			"fusermount3 needs it (Debian's default is mode 0666)", os.Geteuid(), err)
	}
	return nil
}

// MountFS mounts f on dir: directly as root, through fusermount3
// otherwise. default_permissions is always on: the kernel
// checks permissions against the mode, uid and gid we report.
func MountFS(ctx context.Context, f *FS, dir string, mo MountOptions) (*Mount, error) {
	if err := CheckMountHelper(); err != nil {
		return nil, err
	}
	root, err := f.Root(ctx)
	if err != nil {
		return nil, fmt.Errorf("load root: %w", err)
	}
	entry, attr := cacheTimeout(mo.EntryTimeout), cacheTimeout(mo.AttrTimeout)
	var neg *time.Duration
	if mo.NegativeTimeout > 0 {
		neg = &mo.NegativeTimeout
	}
	caps := uint64(fuse.CAP_HANDLE_KILLPRIV_V2)
	if mo.NoKillPriv {
		caps = 0
	}
	name := mo.FSName
	if name == "" {
		name = "zdbfs"
	}
	opts := append([]string{"default_permissions"}, mo.Options...)
	if mo.ReadOnly {
		opts = append(opts, "ro")
	}
	// go-fuse's own diagnostics (a "trySplice: … max pipe size" line per
	// large read that falls back to copying, and every request with
	// Debug) go into our log at debug level.
	flog := slog.NewLogLogger(f.log.Handler(), slog.LevelDebug)
	server, err := gofs.Mount(dir, root, &gofs.Options{
		Logger:          flog,
		EntryTimeout:    &entry,
		AttrTimeout:     &attr,
		NegativeTimeout: neg,
		RootStableAttr:  &gofs.StableAttr{Ino: RootIno, Mode: syscall.S_IFDIR},
		// Modes are reported as stored: without this go-fuse shows a
		// mode of 0000 (open(O_CREAT, 0), mkdir(0)) as 0644 or 0755.
		NullPermissions: true,
		MountOptions: fuse.MountOptions{
			FsName:        name,
			Name:          "zdbfs",
			Options:       opts,
			AllowOther:    mo.AllowOther,
			DirectMount:   os.Geteuid() == 0, // users go through fusermount3
			Debug:         mo.Debug,
			Logger:        flog,
			MaxWrite:      1 << 20,
			MaxReadAhead:  1 << 20,
			MaxBackground: 32,
			// zdbfs clears set-user-id and set-group-id itself (on write,
			// truncate and chown): the kernel then skips the
			// security.capability GETXATTR it would send before every write.
			ExtraCapabilities: caps,
			// Plain READDIR: a listing (find, rm -r, ls) then costs one
			// request per 4 KiB of names instead of an inode load and a
			// kernel inode per entry, and its memory does not grow with
			// the directory. ls -l still looks up what it stats.
			DisableReadDirPlus: true,
			// zdbfs's data is in memory, never in a file to splice
			// from: a splice attempt per READ reply would be wasted
			// system calls (and a logged failure for 1 MiB replies).
			DisableSplice: true,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	ra := mo.ReadAhead
	if ra == 0 {
		ra = DefaultReadAhead
	}
	if ra > 0 {
		if err := setReadAhead(dir, ra); err != nil {
			f.log.Debug("readahead window left at the kernel's default", "err", err)
		}
	}
	timeout := mo.CloseTimeout
	if timeout <= 0 {
		timeout = DefaultCloseTimeout
	}
	return &Mount{FS: f, Dir: dir, server: server, timeout: timeout}, nil
}

// cacheTimeout is d, or DefaultCacheTimeout when d is 0 (negative: no
// caching).
func cacheTimeout(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return DefaultCacheTimeout
	case d < 0:
		return 0
	}
	return d
}

// setReadAhead sets the readahead window of the filesystem mounted on
// dir: the read_ahead_kb of its backing device info (0:N for FUSE).
func setReadAhead(dir string, bytes int) error {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return err
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(p, []byte(strconv.Itoa(bytes>>10)), 0)
}

// Wait blocks until the filesystem is unmounted (by Unmount, umount or
// fusermount3 -u), then flushes and closes it, within CloseTimeout.
func (m *Mount) Wait() error {
	m.server.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	return m.close(ctx)
}

func (m *Mount) close(ctx context.Context) error {
	m.once.Do(func() { m.err = m.FS.Close(ctx) })
	return m.err
}

// Unmount flushes everything, unmounts and closes the filesystem. The
// flushes take at most CloseTimeout together; when zdb does not answer
// within it, the filesystem is unmounted all the same and the error says
// the final flush failed.
func (m *Mount) Unmount() error {
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	ferr := m.FS.SyncAll(ctx)
	var uerr error
	for i := 0; i < 50; i++ {
		if uerr = m.server.Unmount(); uerr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if uerr != nil {
		return fmt.Errorf("unmount %s: %w", m.Dir, uerr)
	}
	m.server.Wait()
	if err := m.close(ctx); err != nil {
		return err
	}
	if ferr != nil {
		return fmt.Errorf("final flush: %w", ferr)
	}
	return nil
}
