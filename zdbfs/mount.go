package zdbfs

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// MountOptions are the FUSE side of a mount.
type MountOptions struct {
	FSName     string   // source shown in /proc/mounts (default "zdbfs")
	AllowOther bool     // allow_other
	ReadOnly   bool     // ro
	Options    []string // more -o options passed to the kernel
	Debug      bool     // log every FUSE request
}

// Mount is a mounted filesystem.
type Mount struct {
	FS     *FS
	Dir    string
	server *fuse.Server
	once   sync.Once
	err    error
}

// MountFS mounts f on dir. default_permissions is always on: the kernel
// checks permissions against the mode, uid and gid we report.
func MountFS(ctx context.Context, f *FS, dir string, mo MountOptions) (*Mount, error) {
	root, err := f.Root(ctx)
	if err != nil {
		return nil, fmt.Errorf("load root: %w", err)
	}
	sec := time.Second
	name := mo.FSName
	if name == "" {
		name = "zdbfs"
	}
	opts := append([]string{"default_permissions"}, mo.Options...)
	if mo.ReadOnly {
		opts = append(opts, "ro")
	}
	server, err := gofs.Mount(dir, root, &gofs.Options{
		EntryTimeout:   &sec,
		AttrTimeout:    &sec,
		RootStableAttr: &gofs.StableAttr{Ino: RootIno, Mode: syscall.S_IFDIR},
		MountOptions: fuse.MountOptions{
			FsName:        name,
			Name:          "zdbfs",
			Options:       opts,
			AllowOther:    mo.AllowOther,
			DirectMount:   true,
			Debug:         mo.Debug,
			MaxWrite:      1 << 20,
			MaxReadAhead:  1 << 20,
			MaxBackground: 32,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	return &Mount{FS: f, Dir: dir, server: server}, nil
}

// Wait blocks until the filesystem is unmounted (by Unmount, umount or
// fusermount3 -u), then flushes and closes it.
func (m *Mount) Wait() error {
	m.server.Wait()
	return m.close()
}

func (m *Mount) close() error {
	m.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		m.err = m.FS.Close(ctx)
	})
	return m.err
}

// Unmount flushes everything, unmounts and closes the filesystem.
func (m *Mount) Unmount() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	ferr := m.FS.SyncAll(ctx)
	cancel()
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
	if err := m.close(); err != nil {
		return err
	}
	return ferr
}
