package zdbfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func stat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	must(t, syscall.Lstat(p, &st))
	return &st
}

// TestSemantics checks each behaviour of spec §2 and each defect of §4
// that a mount can show, over both Store implementations, then remounts
// and checks that what was written persisted.
func TestSemantics(t *testing.T) {
	for _, kind := range backends {
		t.Run(kind, func(t *testing.T) {
			b := newBackend(t, kind)
			mt := mountOn(t, b, Config{})
			p := mt.path
			check := func(name string, fn func(t *testing.T)) { t.Run(name, fn) }

			check("TruncateShrinkGrowReadsZeros", func(t *testing.T) {
				for _, sz := range []int{100, 5000, 200000} {
					fn := p(fmt.Sprintf("trunc%d", sz))
					must(t, os.WriteFile(fn, bytes.Repeat([]byte{'x'}, sz), 0o644))
					must(t, os.Truncate(fn, int64(sz/3)))
					must(t, os.Truncate(fn, int64(sz)))
					got, _ := os.ReadFile(fn)
					want := append(bytes.Repeat([]byte{'x'}, sz/3), make([]byte, sz-sz/3)...)
					if !bytes.Equal(got, want) {
						t.Fatalf("size %d: old bytes visible after shrink+grow", sz)
					}
				}
			})
			check("AppendAndMtime", func(t *testing.T) {
				fn := p("append")
				must(t, os.WriteFile(fn, []byte("a"), 0o644))
				st0 := stat(t, fn)
				f, err := os.OpenFile(fn, os.O_APPEND|os.O_WRONLY, 0)
				must(t, err)
				f.WriteString("bc")
				f.Close()
				got, _ := os.ReadFile(fn)
				st1 := stat(t, fn)
				if string(got) != "abc" {
					t.Fatalf("append: %q", got)
				}
				if st1.Mtim == st0.Mtim && st1.Ctim == st0.Ctim {
					t.Fatal("write did not update mtime/ctime")
				}
			})
			check("SparseHoles", func(t *testing.T) {
				fn := p("sparse")
				f, err := os.Create(fn)
				must(t, err)
				defer f.Close()
				_, err = f.WriteAt([]byte("end"), 10<<20)
				must(t, err)
				buf := make([]byte, 4096)
				_, err = f.ReadAt(buf, 5<<20)
				must(t, err)
				if !bytes.Equal(buf, make([]byte, 4096)) {
					t.Fatal("hole not zero")
				}
				must(t, f.Sync())
				off, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_DATA)
				if err != nil || off != (10<<20)/BlockSize*BlockSize {
					t.Fatalf("SEEK_DATA = %d, %v", off, err)
				}
				off, err = unix.Seek(int(f.Fd()), 0, unix.SEEK_HOLE)
				if err != nil || off != 0 {
					t.Fatalf("SEEK_HOLE = %d, %v", off, err)
				}
			})
			check("Rename", func(t *testing.T) {
				must(t, os.WriteFile(p("ra"), []byte("A"), 0o644))
				must(t, os.WriteFile(p("rb"), []byte("B"), 0o644))
				if err := unix.Renameat2(unix.AT_FDCWD, p("ra"), unix.AT_FDCWD, p("rb"), unix.RENAME_NOREPLACE); !errors.Is(err, syscall.EEXIST) {
					t.Fatalf("RENAME_NOREPLACE: %v", err)
				}
				must(t, unix.Renameat2(unix.AT_FDCWD, p("ra"), unix.AT_FDCWD, p("rb"), unix.RENAME_EXCHANGE))
				a, _ := os.ReadFile(p("ra"))
				bb, _ := os.ReadFile(p("rb"))
				if string(a) != "B" || string(bb) != "A" {
					t.Fatalf("RENAME_EXCHANGE acted as %q %q", a, bb)
				}
				must(t, os.Rename(p("ra"), p("rb")))
				bb, _ = os.ReadFile(p("rb"))
				if _, err := os.Stat(p("ra")); !os.IsNotExist(err) || string(bb) != "B" {
					t.Fatal("rename over existing target")
				}
				must(t, os.MkdirAll(p("rd1"), 0o755))
				must(t, os.MkdirAll(p("rd2/sub"), 0o755))
				if err := syscall.Rename(p("rd1"), p("rd2")); !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
					t.Fatalf("non-empty dir replaced: %v", err)
				}
				must(t, os.Mkdir(p("rd3"), 0o755))
				must(t, syscall.Rename(p("rd1"), p("rd3")))
				must(t, os.Rename(p("rd3"), p("rd2/sub2")))
				if n := stat(t, p("rd2")).Nlink; n != 4 {
					t.Fatalf("rd2 nlink %d after moving a dir in", n)
				}
			})
			check("HardLinks", func(t *testing.T) {
				must(t, os.WriteFile(p("l1"), []byte("L"), 0o644))
				must(t, os.Link(p("l1"), p("l2")))
				if n := stat(t, p("l1")).Nlink; n != 2 {
					t.Fatalf("nlink %d", n)
				}
				must(t, os.Remove(p("l1")))
				got, _ := os.ReadFile(p("l2"))
				if string(got) != "L" || stat(t, p("l2")).Nlink != 1 {
					t.Fatal("link after unlink")
				}
			})
			check("SymlinkSize", func(t *testing.T) {
				must(t, os.Symlink("some/target", p("sym")))
				if st := stat(t, p("sym")); st.Size != int64(len("some/target")) {
					t.Fatalf("symlink size %d", st.Size)
				}
			})
			check("MknodFifo", func(t *testing.T) {
				must(t, unix.Mkfifo(p("fifo"), 0o644))
				must(t, unix.Mknod(p("chr"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))))
				if st := stat(t, p("fifo")); st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
					t.Fatal("not a fifo")
				}
				if st := stat(t, p("chr")); st.Rdev != unix.Mkdev(1, 3) {
					t.Fatalf("rdev %x", st.Rdev)
				}
			})
			check("Xattr", func(t *testing.T) {
				must(t, os.WriteFile(p("x"), nil, 0o644))
				must(t, unix.Setxattr(p("x"), "user.a", []byte("1"), 0))
				must(t, unix.Setxattr(p("x"), "user.b", []byte("22"), 0))
				if err := unix.Setxattr(p("x"), "user.a", []byte("1"), unix.XATTR_CREATE); !errors.Is(err, syscall.EEXIST) {
					t.Fatalf("XATTR_CREATE: %v", err)
				}
				buf := make([]byte, 10)
				n, err := unix.Getxattr(p("x"), "user.b", buf)
				if err != nil || string(buf[:n]) != "22" {
					t.Fatalf("getxattr %q %v", buf[:n], err)
				}
				must(t, unix.Removexattr(p("x"), "user.a"))
				n, _ = unix.Listxattr(p("x"), buf)
				if string(buf[:n]) != "user.b\x00" {
					t.Fatalf("listxattr %q", buf[:n])
				}
			})
			check("Fallocate", func(t *testing.T) {
				f, err := os.Create(p("falloc"))
				must(t, err)
				must(t, unix.Fallocate(int(f.Fd()), 0, 0, 300000))
				f.Close()
				if st := stat(t, p("falloc")); st.Size != 300000 {
					t.Fatalf("size %d", st.Size)
				}
			})
			check("Chown32AndNsTimes", func(t *testing.T) {
				must(t, os.WriteFile(p("own"), nil, 0o644))
				must(t, os.Lchown(p("own"), 100000, 200000))
				ts := []unix.Timespec{{Sec: 1000, Nsec: 123456789}, {Sec: 2000, Nsec: 987654321}}
				must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p("own"), ts, 0))
				st := stat(t, p("own"))
				if st.Uid != 100000 || st.Gid != 200000 || st.Mtim.Nsec != 987654321 || st.Atim.Nsec != 123456789 {
					t.Fatalf("uid %d gid %d mtime %v atime %v", st.Uid, st.Gid, st.Mtim, st.Atim)
				}
				must(t, os.Chmod(p("own"), 0o600))
				if stat(t, p("own")).Mode&0o7777 != 0o600 {
					t.Fatal("chmod")
				}
			})
			check("Statfs", func(t *testing.T) {
				var s unix.Statfs_t
				must(t, unix.Statfs(mt.Dir, &s))
				if s.Blocks == 0 || s.Namelen != 255 {
					t.Fatalf("statfs %+v", s)
				}
			})
			check("DirNlinkAndRmdir", func(t *testing.T) {
				must(t, os.MkdirAll(p("nd/a"), 0o755))
				must(t, os.MkdirAll(p("nd/b"), 0o755))
				if n := stat(t, p("nd")).Nlink; n != 4 {
					t.Fatalf("dir nlink %d, want 4", n)
				}
				// Enough entries for several listing pages; the one that
				// stays is on a later page.
				for i := range 600 {
					must(t, os.WriteFile(p(fmt.Sprintf("nd/a/f%04d", i)), nil, 0o644))
				}
				for i := range 599 {
					must(t, os.Remove(p(fmt.Sprintf("nd/a/f%04d", i))))
				}
				if err := os.Remove(p("nd/a")); !errors.Is(err, syscall.ENOTEMPTY) {
					t.Fatalf("rmdir non-empty: %v", err)
				}
				es, _ := os.ReadDir(p("nd/a"))
				if len(es) != 1 || es[0].Name() != "f0599" {
					t.Fatalf("listing %v", es)
				}
				must(t, os.Remove(p("nd/a/f0599")))
				must(t, os.Remove(p("nd/a")))
				if n := stat(t, p("nd")).Nlink; n != 3 {
					t.Fatalf("dir nlink %d, want 3", n)
				}
			})
			check("UnlinkedOpenReadable", func(t *testing.T) {
				data := bytes.Repeat([]byte("u"), 200000)
				must(t, os.WriteFile(p("unl"), data, 0o644))
				f, err := os.Open(p("unl"))
				must(t, err)
				must(t, os.Remove(p("unl")))
				got := make([]byte, len(data))
				_, err = f.ReadAt(got, 0)
				f.Close()
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("unlinked-but-open read: %v", err)
				}
			})
			check("LongNames", func(t *testing.T) {
				long := strings.Repeat("n", 255)
				must(t, os.WriteFile(p(long), []byte("long"), 0o644))
				es, _ := os.ReadDir(mt.Dir)
				found := false
				for _, e := range es {
					found = found || e.Name() == long
				}
				if !found {
					t.Fatal("255-byte name not listed")
				}
			})
			check("DefaultPermissions", func(t *testing.T) {
				m, _ := os.ReadFile("/proc/self/mountinfo")
				for _, l := range strings.Split(string(m), "\n") {
					if strings.Contains(l, mt.Dir) && !strings.Contains(l, "default_permissions") {
						t.Fatalf("mount without default_permissions: %s", l)
					}
				}
			})

			// Everything above survives a clean unmount and remount.
			mt.unmount()
			mt = mountOn(t, b, Config{})
			p = mt.path
			got, _ := os.ReadFile(p("trunc200000"))
			if len(got) != 200000 || !bytes.Equal(got[200000/3:], make([]byte, 200000-200000/3)) {
				t.Fatal("truncate+grow after remount")
			}
			st := stat(t, p("own"))
			if st.Uid != 100000 || st.Gid != 200000 || st.Mtim.Nsec != 987654321 || st.Mode&0o777 != 0o600 {
				t.Fatalf("attributes after remount: %+v", st)
			}
			if l, _ := os.Readlink(p("sym")); l != "some/target" {
				t.Fatal("symlink after remount")
			}
			buf := make([]byte, 10)
			if n, err := unix.Getxattr(p("x"), "user.b", buf); err != nil || string(buf[:n]) != "22" {
				t.Fatal("xattr after remount")
			}
			if st := stat(t, p("rd2")); st.Nlink != 4 {
				t.Fatalf("nlink after remount %d", st.Nlink)
			}
			sp, _ := os.ReadFile(p("sparse"))
			if len(sp) != 10<<20+3 || string(sp[10<<20:]) != "end" {
				t.Fatal("sparse after remount")
			}
			if _, err := os.Stat(filepath.Join(mt.Dir, "unl")); !os.IsNotExist(err) {
				t.Fatal("unlinked file came back")
			}
			mt.unmount()
		})
	}
}

// TestSignalsDoNotFail: a FUSE request whose caller gets a signal (Go
// programs get SIGURG all the time: goroutine preemption) is interrupted
// by the kernel; zdbfs must still complete it, never fail it with EIO.
func TestSignalsDoNotFail(t *testing.T) {
	mt := mountOn(t, newBackend(t, "client"), Config{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				syscall.Kill(os.Getpid(), syscall.SIGURG)
			}
		}
	})
	data := bytes.Repeat([]byte("s"), 3000)
	for i := range 3000 {
		p := mt.path(fmt.Sprintf("sig%d", i%300))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("file %d: %v", i, err)
		}
		if _, err := os.ReadFile(p); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("read %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	mt.unmount()
}
