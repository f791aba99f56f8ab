package zdb

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing out the dirty pages of
// f in [off, off+n) and returns without waiting for them
// (sync_file_range(2) with SYNC_FILE_RANGE_WRITE). A failure is ignored:
// this only moves work earlier, and the fsync that follows reports errors.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}
