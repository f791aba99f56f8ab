package zstor_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"

	"qss/zstor/zstortest"
)

// TestReadsRecordsOfTheFirstFormat: an object whose metadata was written by
// the first format (a JSON record without "keypad", sealed with seal v1 and
// AD = store key, in envelope v1 on every metadata backend — built here byte
// for byte from docs/zstor-format.md) is checked, listed and retrieved, and
// its record is rewritten in envelope v2 on the way.
func TestReadsRecordsOfTheFirstFormat(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := attackClient(t, cl, "")
	ctx := zstortest.Ctx(t)
	data := zstortest.RandomBytes(2*cl.ChunkSize + 5)
	want := stored(t, c, cl, "legacy/old.bin", data)
	mk := onlyMetaKey(t, c)
	zkey := []byte(zstortest.TestPrefix + "/" + mk)
	plain, err := c.Meta().Get(ctx, mk)
	if err != nil {
		t.Fatal(err)
	}
	// The record as the first format wrote it: no "keypad".
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(plain, &fields); err != nil {
		t.Fatal(err)
	}
	delete(fields, "keypad")
	oldPlain, _ := json.Marshal(fields)

	// Seal v1: version 1, salt, AES-256-GCM(HKDF-SHA256(master, salt,
	// "zstor metadata key v1"), zero nonce, AD = 0x01 ‖ store key).
	master, _ := hex.DecodeString(zstortest.TestKey)
	salt := make([]byte, 16)
	rand.Read(salt)
	k, _ := hkdf.Key(sha256.New, master, salt, "zstor metadata key v1", 32)
	block, _ := aes.NewCipher(k)
	gcm, _ := cipher.NewGCM(block)
	sealed := gcm.Seal(append([]byte{1}, salt...), make([]byte, 12), oldPlain, append([]byte{1}, mk...))
	env := v1Envelope(1, uint64(time.Now().Add(-time.Hour).UnixMilli())<<16, sealed)
	time.Sleep(200 * time.Millisecond)
	for i := range cl.Meta {
		if _, _, err := metaDirect(t, cl, i).Set(ctx, zkey, env); err != nil {
			t.Fatal(err)
		}
	}

	// A fresh client: nothing cached.
	c2 := attackClient(t, cl, "")
	es, foreign, err := c2.List(ctx, "legacy/")
	if err != nil || foreign != 0 || len(es) != 1 || es[0].Checksum != want {
		t.Fatalf("list = %+v, %d, %v", es, foreign, err)
	}
	mustCheck(t, c2, cl, "legacy/old.bin", want, "v1 record")
	if got, _ := os.ReadFile(c2.PathFor("legacy/old.bin")); !bytes.Equal(got, data) {
		t.Fatal("retrieved bytes differ")
	}
	time.Sleep(300 * time.Millisecond)
	for i, v := range rawAll(t, cl, zkey) {
		if v[2] != 2 {
			t.Fatalf("backend %d still holds envelope v%d", i, v[2])
		}
	}
	// And a new version replaces it as usual.
	want2 := stored(t, c2, cl, "legacy/old.bin", zstortest.RandomBytes(100))
	mustCheck(t, c2, cl, "legacy/old.bin", want2, "after a new store")
}
