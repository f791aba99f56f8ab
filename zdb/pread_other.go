//go:build !linux

package zdb

import (
	"errors"
	"io"
	"os"
)

// preadEntry reads head then payload from f at off (two preads where
// preadv is not available).
func preadEntry(f *os.File, head, payload []byte, off int64) (int, error) {
	n, err := f.ReadAt(head, off)
	if err != nil || len(payload) == 0 {
		return n, err
	}
	m, err := f.ReadAt(payload, off+int64(len(head)))
	if errors.Is(err, io.EOF) && m < len(payload) {
		err = io.ErrUnexpectedEOF
	}
	return n + m, err
}
