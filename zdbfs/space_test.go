package zdbfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"qss/zdb/client"
)

// smallDisk mounts a tmpfs of size bytes and returns its directory.
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("mounting a small tmpfs needs root; the suite runs as root in CI")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestDiskFull: when the disk under zdb fills up, writes, fsync and
// namespace operations fail with ENOSPC (never EIO), nothing stored
// before is harmed, and once space is freed the same mount works again.
func TestDiskFull(t *testing.T) {
	for _, kind := range backends {
		t.Run(kind, func(t *testing.T) {
			disk := smallDisk(t, 24<<20)
			b := newBackendIn(t, kind, filepath.Join(disk, "zdb"))
			mt := mountOn(t, b, Config{})
			// Something else takes most of the disk.
			filler := filepath.Join(disk, "filler")
			fill := make([]byte, 14<<20)
			for i := range fill {
				fill[i] = byte(i*7 + i>>9)
			}
			must(t, os.WriteFile(filler, fill, 0o644))
			keep := fill[:1<<20]
			must(t, os.WriteFile(mt.path("kept"), keep, 0o644))
			must(t, syncPath(mt.Dir))

			var full error
			chunk := make([]byte, 1<<20)
			for i := 0; i < 40 && full == nil; i++ {
				for j := range chunk {
					chunk[j] = byte(i + j*3)
				}
				p := mt.path(fmt.Sprintf("f%d", i))
				full = writeSync(p, chunk)
			}
			if !errors.Is(full, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v, want ENOSPC", full)
			}
			// Namespace operations while full: ENOSPC or success, never EIO.
			for i := 0; i < 20; i++ {
				err := os.Mkdir(mt.path(fmt.Sprintf("d%d", i)), 0o755)
				if err == nil {
					err = syncPath(mt.Dir)
				}
				if err != nil && !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("mkdir on a full disk: %v, want ENOSPC", err)
				}
			}
			// Space comes back: the same mount works again.
			must(t, os.Remove(filler))
			must(t, os.Mkdir(mt.path("after"), 0o755))
			must(t, writeSync(mt.path("after/file"), chunk))
			must(t, syncPath(mt.Dir))
			got, err := os.ReadFile(mt.path("kept"))
			must(t, err)
			if string(got) != string(keep) {
				t.Fatal("a file stored before the disk filled up changed")
			}
			mt.unmount()
			mt = mountOn(t, b, Config{})
			if got, err := os.ReadFile(mt.path("after/file")); err != nil || string(got) != string(chunk) {
				t.Fatalf("file written after space came back, after remount: %d bytes, %v", len(got), err)
			}
			mt.unmount()
		})
	}
}

// writeSync writes a file and fsyncs it, returning the first error.
func writeSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncPath fsyncs a file or directory (the mount's root: everything).
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// TestStatfs: df shows what zdb holds and what the disk under it (or the
// namespace's size limit) still takes, not constants: writing 8 MiB of
// file data raises Used by at least that, Avail follows the disk under
// zdb, a maxsize on the data namespace caps Avail, and size= caps Size.
func TestStatfs(t *testing.T) {
	for _, kind := range backends {
		t.Run(kind, func(t *testing.T) {
			disk := smallDisk(t, 64<<20)
			b := newBackendIn(t, kind, filepath.Join(disk, "zdb"))
			mt := mountOn(t, b, Config{})
			statfs := func(p string) (size, used, avail uint64) {
				t.Helper()
				var s unix.Statfs_t
				must(t, unix.Statfs(p, &s))
				bs := uint64(s.Bsize)
				return s.Blocks * bs, (s.Blocks - s.Bfree) * bs, s.Bavail * bs
			}
			near := func(a, b, slack uint64) bool { return a <= b+slack && b <= a+slack }
			_, used0, _ := statfs(mt.Dir)
			data := make([]byte, 8<<20)
			for i := range data {
				data[i] = byte(i*13 + i>>11)
			}
			must(t, writeSync(mt.path("eight"), data))
			time.Sleep(1100 * time.Millisecond) // statfs figures are kept for a second
			size, used, avail := statfs(mt.Dir)
			_, _, diskAvail := statfs(disk)
			if used < used0+8<<20 || used > used0+10<<20 {
				t.Errorf("Used went from %d to %d after writing 8 MiB", used0, used)
			}
			if !near(avail, diskAvail, 1<<20) {
				t.Errorf("Avail %d, the disk under zdb has %d", avail, diskAvail)
			}
			if size != used+avail && !near(size, used+avail, 4096) {
				t.Errorf("Size %d != Used %d + Avail %d", size, used, avail)
			}
			if size > 64<<20+1<<20 {
				t.Errorf("Size %d on a 64 MiB disk", size)
			}
			// A sparse file takes no space.
			must(t, os.WriteFile(mt.path("sparse"), nil, 0o644))
			must(t, os.Truncate(mt.path("sparse"), 1<<30))
			must(t, syncPath(mt.Dir))
			time.Sleep(1100 * time.Millisecond)
			if _, u, _ := statfs(mt.Dir); u > used+1<<20 {
				t.Errorf("Used went from %d to %d for a sparse file", used, u)
			}
			mt.unmount()

			if kind == "client" {
				admin, err := client.New(context.Background(), client.Options{Addr: b.srv.Addr()})
				must(t, err)
				must(t, admin.NSSet(context.Background(), "data", "maxsize", fmt.Sprint(20<<20)))
				admin.Close()
				mt = mountOn(t, b, Config{})
				_, used, avail := statfs(mt.Dir)
				if avail > 12<<20 || avail < 10<<20 {
					t.Errorf("Avail %d with a 20 MiB data namespace holding 8 MiB (used %d)", avail, used)
				}
				mt.unmount()
			}
			mt = mountOn(t, b, Config{Capacity: 16 << 20})
			if size, used, avail := statfs(mt.Dir); size != 16<<20 || avail != size-used {
				t.Errorf("size=16M: Size %d, Used %d, Avail %d", size, used, avail)
			}
			mt.unmount()
		})
	}
}
