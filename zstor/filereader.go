package zstor

import (
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fileReader reads a file being stored sequentially, bypassing the page
// cache (O_DIRECT) for reads whose file offset, length and buffer are
// aligned — the encoder reads whole chunks into page-aligned buffers, so
// every chunk but the tail — and whose range the page cache does not hold.
// Why: reading a cold file through the page cache cost a store more CPU
// than anything else (on a 2 vCPU machine, 1.0-2.9 s of system time for
// 1 GiB, against 0.4-0.6 s direct): every page is allocated, filled,
// copied out and later reclaimed, for bytes read exactly once.
//
// A range the page cache already holds (a file written a moment ago, the
// usual case under qsfs) is read through it, as a copy from memory is
// cheaper than reading the disk again, and a direct read would first have
// to write any dirty page back. Where the kernel cannot tell (no
// cachestat(2), before Linux 6.5) or refuses O_DIRECT, every read is
// buffered, as before.
type fileReader struct {
	f  *os.File
	fd int

	off  int64 // bytes read
	size int64 // the file's size when the read started

	direct    bool  // O_DIRECT is set on the descriptor
	noDirect  error // why direct reads are off for good (nil: still tried)
	directLen int64 // bytes read with O_DIRECT, for tests
}

// newFileReader reads f, of size bytes, from the start (the caller seeks
// there).
func newFileReader(f *os.File, size int64) *fileReader {
	return &fileReader{f: f, fd: int(f.Fd()), size: size}
}

func (r *fileReader) Read(p []byte) (int, error) {
	if n := r.directPrefix(p); n > 0 && r.uncached(n) {
		if m, ok, err := r.readDirect(p[:n]); ok {
			return m, err
		}
	}
	if r.direct {
		if err := r.setDirect(false); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Read(p)
	r.off += int64(n)
	return n, err
}

// directPrefix is how many leading bytes of p can be read with O_DIRECT
// at the current offset (0 when none).
func (r *fileReader) directPrefix(p []byte) int {
	if r.noDirect != nil || r.off%directAlign != 0 || len(p) < directAlign ||
		uintptr(unsafe.Pointer(unsafe.SliceData(p)))%directAlign != 0 {
		return 0
	}
	return len(p) &^ (directAlign - 1)
}

// uncached reports whether the next n bytes are worth reading directly:
// at most an eighth of their pages (those before the end of the file) are
// in the page cache, none of them dirty or under writeback.
func (r *fileReader) uncached(n int) bool {
	var cs unix.Cachestat_t
	rng := unix.CachestatRange{Off: uint64(r.off), Len: uint64(n)}
	if err := unix.Cachestat(uint(r.fd), &rng, &cs, 0); err != nil {
		// ENOSYS (an older kernel) or a filesystem without page cache
		// accounting: keep to the page cache, as before.
		r.noDirect = err
		return false
	}
	inFile := min(int64(n), max(r.size-r.off, 0))
	pages := uint64(inFile+directAlign-1) / directAlign
	return cs.Dirty == 0 && cs.Writeback == 0 && cs.Cache <= pages/8
}

// readDirect reads p with O_DIRECT; ok is false when the file refuses it
// (and direct reads are off from then on), so the caller reads p buffered.
func (r *fileReader) readDirect(p []byte) (n int, ok bool, err error) {
	if !r.direct {
		if err := r.setDirect(true); err != nil {
			r.noDirect = err
			return 0, false, nil
		}
	}
	n, err = r.f.Read(p)
	if err != nil && errors.Is(err, unix.EINVAL) && n == 0 {
		// The filesystem takes the flag but not the I/O.
		r.noDirect = err
		return 0, false, nil
	}
	r.off += int64(n)
	r.directLen += int64(n)
	return n, true, err
}

// finish clears O_DIRECT again, for whoever reads the file next through
// the same descriptor (with buffers of any alignment).
func (r *fileReader) finish() error {
	if !r.direct {
		return nil
	}
	return r.setDirect(false)
}

// setDirect sets or clears O_DIRECT on the descriptor. It also clears
// O_NONBLOCK, which openRegular sets only so that opening a FIFO cannot
// hang: the file is regular by now, and a direct read must block.
func (r *fileReader) setDirect(on bool) error {
	fl, err := unix.FcntlInt(uintptr(r.fd), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	fl &^= unix.O_NONBLOCK
	if on {
		fl |= unix.O_DIRECT
	} else {
		fl &^= unix.O_DIRECT
	}
	if _, err := unix.FcntlInt(uintptr(r.fd), unix.F_SETFL, fl); err != nil {
		return err
	}
	r.direct = on
	return nil
}
