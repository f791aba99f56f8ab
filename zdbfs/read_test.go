package zdbfs

import (
	"bytes"
	"context"
	"os"
	"syscall"
	"testing"
)

// TestReadLendsBlocks: a read reply carries the cached blocks' own bytes
// (no copy), and a write after it changes a copy of the block: the bytes
// lent to the reply are never changed under it.
func TestReadLendsBlocks(t *testing.T) {
	b := newBackend(t, "engine")
	mt := mountOn(t, b, Config{})
	p := mt.path("f")
	data := bytes.Repeat([]byte{7}, 2*BlockSize)
	must(t, os.WriteFile(p, data, 0o644))
	fi, err := os.Stat(p)
	must(t, err)
	f := mt.m.FS
	f.tmu.Lock()
	in := f.inodes[fi.Sys().(*syscall.Stat_t).Ino]
	f.tmu.Unlock()
	if in == nil || in.node == nil {
		t.Fatal("no inode for the file")
	}
	vec, err := f.read(context.Background(), in.node, make([]byte, BlockSize+200), BlockSize-100)
	must(t, err)
	var got []byte
	for _, s := range vec {
		got = append(got, s...)
	}
	if !bytes.Equal(got, data[BlockSize-100:]) { // up to the end of the file
		t.Fatalf("read %d bytes, not the file's", len(got))
	}
	if len(vec) != 2 {
		t.Fatalf("read across two cached blocks gave %d slices, want the 2 blocks' own bytes", len(vec))
	}
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	must(t, err)
	_, err = w.WriteAt(bytes.Repeat([]byte{9}, 300), BlockSize-150)
	must(t, err)
	must(t, w.Close())
	for i, s := range vec {
		if bytes.IndexByte(s, 9) >= 0 {
			t.Fatalf("slice %d lent to a read reply changed by a later write", i)
		}
	}
	back, err := os.ReadFile(p)
	must(t, err)
	if back[BlockSize-150] != 9 || back[BlockSize+149] != 9 || back[BlockSize+150] != 7 {
		t.Fatal("the write is not in the file")
	}
	mt.unmount()
}
