package zdbfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRandomOps applies the same random operations to the mount and to a
// local directory and compares both trees along the way.
func TestRandomOps(t *testing.T) {
	for _, kind := range backends {
		t.Run(kind, func(t *testing.T) {
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 42))
			mt := mountOn(t, newBackend(t, kind), Config{CacheBytes: 1 << 20, FlushAge: 100 * time.Millisecond})
			local := t.TempDir()
			roots := []string{mt.Dir, local}
			files := []string{"f0", "f1", "d0/f2", "d0/d1/f3", "d1/f4", "f5", "d0/f6"}
			dirs := []string{"d0", "d1", "d0/d1", "d2", "d1/d3"}
			pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
			const nops = 2500
			for i := range nops {
				op := rng.IntN(11)
				var a, b string
				var off, n int64
				var mode uint32
				var fill byte
				switch op {
				case 0, 1, 2:
					a, off, n, fill = pick(files), rng.Int64N(400000), rng.Int64N(150000), byte(rng.IntN(255)+1)
				case 3:
					a, off = pick(files), rng.Int64N(300000)
				case 4, 5:
					a, b = pick(append(files, dirs...)), pick(append(files, dirs...))
				case 6:
					a, b = pick(files), pick(files)
				case 7:
					a = pick(files)
				case 8:
					a = pick(dirs)
				case 9:
					a = pick(dirs)
				case 10:
					a, mode, fill = pick(files), uint32(rng.IntN(0o777)), byte('a'+rng.IntN(26))
				}
				var errs [2]error
				for r, root := range roots {
					P := func(x string) string { return filepath.Join(root, x) }
					switch op {
					case 0, 1, 2:
						f, err := os.OpenFile(P(a), os.O_CREATE|os.O_WRONLY, 0o644)
						if err == nil {
							_, err = f.WriteAt(bytes.Repeat([]byte{fill}, int(n)), off)
							f.Close()
						}
						errs[r] = err
					case 3:
						errs[r] = os.Truncate(P(a), off)
					case 4, 5:
						errs[r] = syscall.Rename(P(a), P(b))
					case 6:
						errs[r] = os.Link(P(a), P(b))
					case 7:
						errs[r] = os.Remove(P(a))
					case 8:
						errs[r] = os.Mkdir(P(a), 0o755)
					case 9:
						errs[r] = syscall.Rmdir(P(a))
					case 10:
						if err := os.Chmod(P(a), os.FileMode(mode|0o600)); err != nil {
							errs[r] = err
						} else {
							errs[r] = unix.Setxattr(P(a), "user.k", []byte{fill}, 0)
						}
					}
				}
				if errno(errs[0]) != errno(errs[1]) {
					t.Fatalf("op %d (%d %s %s): mount %v, local %v", i, op, a, b, errs[0], errs[1])
				}
				if i%250 == 0 || i == nops-1 {
					compareTrees(t, mt.Dir, local)
				}
			}
			mt.unmount()
		})
	}
}

func errno(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	if err != nil {
		return 255
	}
	return 0
}

type entry struct {
	mode  fs.FileMode
	size  int64
	nlink uint64
	data  string
	xattr string
}

func snapshot(t *testing.T, root string) map[string]entry {
	out := map[string]entry{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatalf("walk %s: %v", p, err)
		}
		rel, _ := filepath.Rel(root, p)
		fi, _ := os.Lstat(p)
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{mode: fi.Mode(), nlink: uint64(st.Nlink)}
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			e.size, e.data = fi.Size(), fmt.Sprintf("%x", b)
			buf := make([]byte, 16)
			n, _ := unix.Getxattr(p, "user.k", buf)
			e.xattr = string(buf[:max(n, 0)])
		}
		out[rel] = e
		return nil
	})
	return out
}

func compareTrees(t *testing.T, a, b string) {
	t.Helper()
	sa, sb := snapshot(t, a), snapshot(t, b)
	var names []string
	for k := range sa {
		names = append(names, k)
	}
	for k := range sb {
		if _, ok := sa[k]; !ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		if k == "." {
			continue
		}
		ea, oka := sa[k]
		eb, okb := sb[k]
		if oka != okb || ea.mode != eb.mode || ea.size != eb.size || ea.nlink != eb.nlink || ea.data != eb.data || ea.xattr != eb.xattr {
			t.Fatalf("trees differ at %s: mount %v %+v / local %v %+v", k, oka,
				entry{ea.mode, ea.size, ea.nlink, "", ea.xattr}, okb, entry{eb.mode, eb.size, eb.nlink, "", eb.xattr})
		}
	}
}
