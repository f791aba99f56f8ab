package main

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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

// TestSyncCommand: `qsfs sync` returns only once what was written before it
// is stored: with an RPO of an hour, a kill -9 right after it and the loss
// of the local directory lose nothing. Without a mount, `qsfs sync` stores
// what a killed mount had fsync'ed but not stored.
func TestSyncCommand(t *testing.T) {
	f := newFixture(t, `cache_size = "64M"
rpo = "1h"
data_file_size = "1M"`)
	p := f.mount()
	a := newSecretFile(2 << 20)
	// Written and closed, not fsync'ed: sync flushes the mount too.
	if err := os.WriteFile(filepath.Join(f.mnt, a.name), a.data, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	f.mustRun(nil, "sync")
	t.Logf("qsfs sync (mounted) took %v", time.Since(start))
	p.kill9()
	f.wipe()
	f.mustRun(nil, "restore")

	p = f.mount()
	checkFile(t, filepath.Join(f.mnt, a.name), a.data)
	b := newSecretFile(1 << 20)
	writeFile(t, filepath.Join(f.mnt, b.name), b.data)
	p.kill9()
	// Not mounted: sync opens the local files and stores them.
	f.mustRun(nil, "sync")
	if s, code := f.status(); code != exitStopped || s.Running {
		t.Errorf("status after sync without a mount: exit %d, running %v (want %d, false)", code, s.Running, exitStopped)
	}
	f.wipe()
	f.mustRun(nil, "restore")
	f.mount()
	checkFile(t, filepath.Join(f.mnt, a.name), a.data)
	checkFile(t, filepath.Join(f.mnt, b.name), b.data)
	a.checkNoPlaintext(t, f.cl)
	b.checkNoPlaintext(t, f.cl)
}
