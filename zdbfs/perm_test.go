package zdbfs

import (
	"bytes"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The permission tests run each operation on the local disk (ext4 under
// /var/tmp, falling back to the test's temporary directory) and on a
// mount, and compare what the two show. Operations of another user run
// as uid/gid otherUID (nobody's number space is avoided: any unused id
// works) through a child process; the mount is made with allow_other so
// that the kernel lets that user in, and the directories above it are
// opened to everyone.

const otherUID = 4242

// permEnv is a local directory and a zdbfs mount side by side, both
// reachable by otherUID.
type permEnv struct {
	t     *testing.T
	mt    *mounted
	local string
}

func newPermEnv(t *testing.T) *permEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the permission tests need root (to act as another user); the suite runs as root in CI")
	}
	base, err := os.MkdirTemp("/var/tmp", "zdbfs-perm")
	if err != nil {
		base, err = os.MkdirTemp("", "zdbfs-perm")
		must(t, err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	must(t, os.Chmod(base, 0o755))
	local, mnt := filepath.Join(base, "local"), filepath.Join(base, "mnt")
	must(t, os.Mkdir(local, 0o755))
	must(t, os.Mkdir(mnt, 0o755))
	must(t, os.Chmod(local, 0o777))
	mt := mountAt(t, newBackend(t, "engine"), Config{}, mnt, MountOptions{AllowOther: true})
	must(t, os.Chmod(mnt, 0o777))
	return &permEnv{t: t, mt: mt, local: local}
}

// both runs op on the local directory and on the mount; op returns a
// description of the outcome, which must be the same on both.
func (e *permEnv) both(what string, op func(dir string) string) string {
	e.t.Helper()
	want := op(e.local)
	got := op(e.mt.Dir)
	if got != want {
		e.t.Errorf("%s: zdbfs gives %q, the local disk %q", what, got, want)
	}
	return got
}

// asOther runs a command as otherUID:otherUID and returns its combined
// output and error.
func asOther(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: otherUID, Gid: otherUID}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func modeOf(t *testing.T, path string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "stat: " + err.Error()
	}
	return fmt.Sprintf("%o", st.Mode&0o7777)
}

// TestCreateModeZero: open(O_CREAT, 0000) and mkdir(0000) create with
// mode 0000, as the local disk does (the umask only removes bits).
func TestCreateModeZero(t *testing.T) {
	e := newPermEnv(t)
	e.both("open(O_CREAT, 0)", func(dir string) string {
		p := filepath.Join(dir, "zero")
		fd, err := syscall.Open(p, syscall.O_CREAT|syscall.O_WRONLY|syscall.O_EXCL, 0)
		if err != nil {
			return err.Error()
		}
		syscall.Close(fd)
		return modeOf(t, p)
	})
	e.both("mkdir(0)", func(dir string) string {
		p := filepath.Join(dir, "zerodir")
		if err := syscall.Mkdir(p, 0); err != nil {
			return err.Error()
		}
		return modeOf(t, p)
	})
	e.both("mknod fifo 0", func(dir string) string {
		p := filepath.Join(dir, "zerofifo")
		if err := syscall.Mknod(p, syscall.S_IFIFO, 0); err != nil {
			return err.Error()
		}
		return modeOf(t, p)
	})
	e.mt.unmount()
}

// TestKillSetID: a chown of a regular file (by its owner, and by root)
// and a write by another user clear set-user-id, and set-group-id when
// the group may execute, exactly as on the local disk; a chown of a
// directory keeps them.
func TestKillSetID(t *testing.T) {
	e := newPermEnv(t)
	setup := func(dir, name string, mode uint32, uid int) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, []byte("x"), 0o600))
		must(t, os.Chown(p, uid, uid))
		must(t, os.Chmod(p, os.FileMode(mode&0o777)|modeBits(mode)))
		return p
	}
	for _, mode := range []uint32{0o6755, 0o6745, 0o4700} {
		e.both(fmt.Sprintf("chown by the owner, mode %o", mode), func(dir string) string {
			p := setup(dir, fmt.Sprintf("own%o", mode), mode, otherUID)
			if out, err := asOther("chown", fmt.Sprintf("%d:%d", otherUID, otherUID), p); err != nil {
				return "chown: " + out
			}
			return modeOf(t, p)
		})
		e.both(fmt.Sprintf("chown by root, mode %o", mode), func(dir string) string {
			p := setup(dir, fmt.Sprintf("root%o", mode), mode, otherUID)
			must(t, os.Chown(p, 0, 0))
			return modeOf(t, p)
		})
	}
	e.both("chown of a setgid directory", func(dir string) string {
		p := filepath.Join(dir, "sgiddir")
		must(t, os.Mkdir(p, 0o755))
		must(t, os.Chmod(p, 0o755|os.ModeSetgid|os.ModeSetuid))
		must(t, os.Chown(p, otherUID, otherUID))
		return modeOf(t, p)
	})
	for _, mode := range []uint32{0o6777, 0o6767} {
		e.both(fmt.Sprintf("write by another user, mode %o", mode), func(dir string) string {
			p := setup(dir, fmt.Sprintf("w%o", mode), mode, 0)
			if out, err := asOther("sh", "-c", "printf y >> "+p); err != nil {
				return "write: " + out
			}
			return modeOf(t, p)
		})
		e.both(fmt.Sprintf("truncate by another user, mode %o", mode), func(dir string) string {
			p := setup(dir, fmt.Sprintf("t%o", mode), mode, 0)
			if out, err := asOther("truncate", "-s", "0", p); err != nil {
				return "truncate: " + out
			}
			return modeOf(t, p)
		})
	}
	e.both("write by root", func(dir string) string {
		p := setup(dir, "wroot", 0o6777, otherUID)
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		must(t, err)
		_, err = f.Write([]byte("z"))
		must(t, err)
		must(t, f.Close())
		return modeOf(t, p)
	})
	e.mt.unmount()
}

// modeBits turns the set-id and sticky bits of a numeric mode into
// os.FileMode flags.
func modeBits(mode uint32) os.FileMode {
	var m os.FileMode
	if mode&syscall.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if mode&syscall.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	if mode&syscall.S_ISVTX != 0 {
		m |= os.ModeSticky
	}
	return m
}

// TestCopyPreservesModes: cp -a and cp -p onto the mount leave the modes
// of the source, no POSIX ACL, and files another user may read stay
// readable to that user, as on the local disk. zdbfs has no POSIX ACLs:
// it refuses their xattrs (EOPNOTSUPP) as a filesystem mounted without
// ACL support does, and cp then sets the mode instead.
func TestCopyPreservesModes(t *testing.T) {
	e := newPermEnv(t)
	src := filepath.Join(filepath.Dir(e.local), "src")
	must(t, os.MkdirAll(filepath.Join(src, "sub"), 0o755))
	files := map[string]os.FileMode{"r644": 0o644, "x755": 0o755, "p600": 0o600, "sub/g640": 0o640, "sub/s4755": 0o4755 | os.ModeSetuid}
	for name, mode := range files {
		p := filepath.Join(src, name)
		must(t, os.WriteFile(p, []byte(name), 0o600))
		must(t, os.Chmod(p, mode))
	}
	must(t, os.Chmod(filepath.Join(src, "sub"), 0o750))
	for _, flag := range []string{"-a", "-p"} {
		e.both("cp "+flag, func(dir string) string {
			dst := filepath.Join(dir, "cp"+flag)
			args := []string{flag, src, dst}
			if flag == "-p" {
				args = []string{"-r", "-p", src, dst}
			}
			if out, err := exec.Command("cp", args...).CombinedOutput(); err != nil {
				return "cp: " + string(out)
			}
			var sb strings.Builder
			filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
				if err != nil {
					fmt.Fprintf(&sb, "%v;", err)
					return nil
				}
				rel, _ := filepath.Rel(dst, p)
				fmt.Fprintf(&sb, "%s %s", rel, modeOf(t, p))
				if n, _ := unix.Getxattr(p, "system.posix_acl_access", nil); n > 0 {
					sb.WriteString(" acl")
				}
				sb.WriteString(";")
				return nil
			})
			out, err := asOther("cat", filepath.Join(dst, "r644"))
			fmt.Fprintf(&sb, " other reads r644: %q %v", out, err)
			return sb.String()
		})
	}
	// Setting an ACL is refused, and nothing is stored.
	p := e.mt.path("cp-a/r644")
	acl := []byte{2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, 4, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, 0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff}
	for _, name := range []string{"system.posix_acl_access", "system.posix_acl_default"} {
		target := p
		if strings.HasSuffix(name, "default") {
			target = e.mt.path("cp-a/sub")
		}
		if err := unix.Setxattr(target, name, acl, 0); !errors.Is(err, unix.EOPNOTSUPP) {
			t.Errorf("setxattr %s on the mount: %v, want EOPNOTSUPP", name, err)
		}
	}
	if got := modeOf(t, p); got != "644" {
		t.Errorf("mode after a refused ACL: %s", got)
	}
	buf := make([]byte, 4096)
	n, err := unix.Listxattr(p, buf)
	must(t, err)
	if bytes.Contains(buf[:n], []byte("posix_acl")) {
		t.Errorf("listxattr after a refused ACL: %q", buf[:n])
	}
	e.mt.unmount()
}
