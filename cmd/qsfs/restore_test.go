package main

import (
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"qss/zstor/zstortest"
)

// secretFile is a file whose content and name must never reach a backend
// in clear: random bytes with a marker string in the middle.
type secretFile struct {
	name, marker string
	data         []byte
}

func newSecretFile(size int) secretFile {
	var r [8]byte
	rand.Read(r[:])
	tag := hex.EncodeToString(r[:])
	s := secretFile{name: "secret-name-" + tag + ".bin", marker: "QSFS-PLAINTEXT-MARKER-" + tag, data: zstortest.RandomBytes(size)}
	copy(s.data[size/3:], s.marker)
	return s
}

// checkNoPlaintext fails when any backend file holds the marker, the name
// or a sample of the content.
func (s secretFile) checkNoPlaintext(t *testing.T, cl *zstortest.Cluster) {
	t.Helper()
	needles := map[string][]byte{"marker": []byte(s.marker), "file name": []byte(s.name)}
	for _, off := range []int{0, len(s.data) / 2, len(s.data) - 64} {
		needles["content at "+strconv.Itoa(off)] = s.data[off : off+64]
	}
	for what, b := range needles {
		if hits := cl.GrepBackends(b); len(hits) > 0 {
			t.Errorf("the %s is in clear on the backends: %s", what, strings.Join(hits, ", "))
		}
	}
}

// TestRPOKillNineRestore: a file fsync'ed and left alone for the RPO is on
// the backends: after kill -9 and the loss of the whole local directory,
// `qsfs restore` and a new mount give it back byte for byte, and no
// backend ever saw its content, its marker or its name in clear.
func TestRPOKillNineRestore(t *testing.T) {
	f := newFixture(t, `cache_size = "64M"
rpo = "2s"
data_file_size = "1M"`)
	p := f.mount()
	before, _ := f.status()

	s := newSecretFile(3 << 20)
	writeFile(t, filepath.Join(f.mnt, s.name), s.data)
	// rpo + upload time: the status says when everything is stored.
	f.waitStored(before.LastPoint.Generation)

	p.kill9()
	f.wipe()
	r := f.mustRun(nil, "restore")
	if !strings.Contains(r.stdout, "restored recovery point") {
		t.Errorf("restore printed %q", r.stdout)
	}
	f.mount()
	checkFile(t, filepath.Join(f.mnt, s.name), s.data)
	s.checkNoPlaintext(t, f.cl)
}
