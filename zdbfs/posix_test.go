package zdbfs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// TestPosix runs go-fuse's posixtest suite against a mount, over both
// Store implementations.
func TestPosix(t *testing.T) {
	for _, kind := range backends {
		t.Run(kind, func(t *testing.T) {
			mt := mountOn(t, newBackend(t, kind), Config{})
			names := make([]string, 0, len(posixtest.All))
			for n := range posixtest.All {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				if n == "FcntlFlockLocksFile" {
					// This case expects two descriptors of one process to
					// conflict on F_SETLK (open-file-description
					// semantics, which go-fuse's loopback gets by
					// forwarding to OFD locks). POSIX says a process never
					// conflicts with itself, and ext4 fails this case too.
					// zdbfs leaves locks to the kernel, which applies
					// POSIX; TestPOSIXLocks checks that the mount behaves
					// exactly as the local disk, and that this very case
					// fails there as well.
					continue
				}
				t.Run(n, func(t *testing.T) {
					dir := filepath.Join(mt.Dir, n)
					if err := os.Mkdir(dir, 0o755); err != nil {
						t.Fatal(err)
					}
					posixtest.All[n](t, dir)
				})
			}
			mt.unmount()
		})
	}
}

// lockHelperEnv makes the test binary a second process that tries a lock
// (see TestPOSIXLocks): a write lock on the whole file, exit status 0
// when it got it, 3 on EAGAIN.
const lockHelperEnv = "ZDBFS_LOCK_HELPER"

func TestMain(m *testing.M) {
	if path := os.Getenv(lockHelperEnv); path != "" {
		os.Exit(tryLock(path))
	}
	os.Exit(m.Run())
}

func tryLock(path string) int {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 2
	}
	defer f.Close()
	lk := syscall.Flock_t{Type: syscall.F_WRLCK}
	switch err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); {
	case err == nil:
		return 0
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EACCES):
		return 3
	}
	return 2
}

// TestPOSIXLocks: record locks (fcntl F_SETLK) and flock on the mount
// behave as on the local disk: a process does not conflict with itself
// through a second descriptor (the expectation of go-fuse's
// FcntlFlockLocksFile, which ext4 does not meet either), another process
// does conflict, and closing any descriptor of the file releases the
// process's record locks. flock locks conflict between open files.
func TestPOSIXLocks(t *testing.T) {
	mt := mountOn(t, newBackend(t, "engine"), Config{})
	local, err := os.MkdirTemp("/var/tmp", "zdbfs-locks") // on disk (ext4 here), not tmpfs
	if err != nil {
		local = t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(local) })
	type outcome struct {
		secondFD, otherProcess, afterClose int
		flockConflict                      bool
	}
	run := func(dir string) outcome {
		var o outcome
		path := filepath.Join(dir, "locked")
		f1, err := os.Create(path)
		must(t, err)
		wlk := syscall.Flock_t{Type: syscall.F_WRLCK}
		must(t, syscall.FcntlFlock(f1.Fd(), syscall.F_SETLK, &wlk))
		f2, err := os.OpenFile(path, os.O_RDWR, 0)
		must(t, err)
		rlk := syscall.Flock_t{Type: syscall.F_RDLCK}
		if err := syscall.FcntlFlock(f2.Fd(), syscall.F_SETLK, &rlk); err != nil {
			o.secondFD = 3 // go-fuse's FcntlFlockLocksFile wants this
		}
		// The process now holds a read lock (its own second lock replaced
		// the first): another process's write lock conflicts with it.
		other := func() int {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), lockHelperEnv+"="+path)
			err := cmd.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return ee.ExitCode()
			}
			must(t, err)
			return 0
		}
		o.otherProcess = other()
		f2.Close() // POSIX: releases every record lock of this process on the file
		o.afterClose = other()
		// flock: per open file description.
		must(t, syscall.Flock(int(f1.Fd()), syscall.LOCK_EX))
		f3, err := os.Open(path)
		must(t, err)
		o.flockConflict = syscall.Flock(int(f3.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil
		f3.Close()
		f1.Close()
		return o
	}
	want := outcome{secondFD: 0, otherProcess: 3, afterClose: 0, flockConflict: true}
	if got := run(local); got != want {
		t.Fatalf("local disk (%s): %+v, want %+v", local, got, want)
	}
	if got := run(mt.Dir); got != want {
		t.Fatalf("zdbfs mount: %+v, want %+v (the local disk gives the latter)", got, want)
	}
	mt.unmount()
}
