package zdb

import (
	"os"

	"golang.org/x/sys/unix"
)

// preadEntry reads head then payload from f at off in one preadv.
func preadEntry(f *os.File, head, payload []byte, off int64) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	iov := [][]byte{head, payload}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Preadv(int(fd), iov, off)
			if rerr != unix.EINTR {
				return true
			}
		}
	}); err != nil {
		return 0, err
	}
	return n, rerr
}
