package pipeline

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"

	"github.com/klauspost/reedsolomon"
	"github.com/zeebo/blake3"
)

// TestShardFormatV1 rebuilds every shard of a small object from the rules in
// docs/zstor-format.md with nothing but the standard library, BLAKE3 and
// Reed-Solomon, and requires the encoder's output to be identical. A golden
// digest pins the whole object, so a change in any dependency that would
// alter stored bytes (the Reed-Solomon matrix, say) fails here too.
func TestShardFormatV1(t *testing.T) {
	master := testKey(42)
	id := ObjectID{0: 0xa1, 7: 0x07, 15: 0xff}
	const k, n, chunkSize = 3, 5, 4096
	data := textData(2*chunkSize+1000, 1)

	enc, err := NewEncoder(master, Options{K: k, N: n, Compression: CompressionNone, ChunkSize: chunkSize, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	enc.newID = func() ObjectID { return id }
	var got [][][]byte
	obj, err := enc.Encode(context.Background(), bytes.NewReader(data), func(_ context.Context, c *EncodedChunk) error {
		got = append(got, c.Shards)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	dataKey, _ := hkdf.Key(sha256.New, master[:], id[:], "zstor data key v1", 32)
	shardKey, _ := hkdf.Key(sha256.New, master[:], id[:], "zstor shard key v1", 32)
	block, _ := aes.NewCipher(dataKey)
	gcm, _ := cipher.NewGCM(block)
	rs, _ := reedsolomon.New(k, n-k)
	all := blake3.New()

	for ci := 0; ci*chunkSize < len(data); ci++ {
		plain := data[ci*chunkSize : min((ci+1)*chunkSize, len(data))]
		final := (ci+1)*chunkSize >= len(data)
		var flags byte
		if final {
			flags = 1
		}
		ad := []byte{1, flags, 0, k, n}
		ad = append(ad, id[:]...)
		ad = binary.LittleEndian.AppendUint64(ad, uint64(ci))
		ad = binary.LittleEndian.AppendUint32(ad, chunkSize)
		ad = binary.LittleEndian.AppendUint32(ad, uint32(len(plain)))
		nonce := binary.BigEndian.AppendUint64([]byte{0, 0, 0, 0}, uint64(ci))
		ct := gcm.Seal(nil, nonce, plain, ad)
		p := (len(ct) + k - 1) / k
		padded := append(ct, make([]byte, k*p-len(ct))...)
		payloads := make([][]byte, n)
		for i := range payloads {
			if i < k {
				payloads[i] = padded[i*p : (i+1)*p]
			} else {
				payloads[i] = make([]byte, p)
			}
		}
		rs.Encode(payloads)
		for si := range n {
			h := []byte("ZSHD")
			h = append(h, 1, flags, 0, k, n, byte(si), 0, 0)
			h = append(h, id[:]...)
			h = binary.LittleEndian.AppendUint64(h, uint64(ci))
			h = binary.LittleEndian.AppendUint32(h, chunkSize)
			h = binary.LittleEndian.AppendUint32(h, uint32(len(plain)))
			h = binary.LittleEndian.AppendUint32(h, uint32(len(ct)))
			h = binary.LittleEndian.AppendUint32(h, uint32(p))
			if len(h) != HeaderSize {
				t.Fatalf("header %d bytes", len(h))
			}
			body := append(h, payloads[si]...)
			mac, _ := blake3.NewKeyed(shardKey)
			mac.Write(body)
			want := mac.Sum(body)
			if !bytes.Equal(got[ci][si], want) {
				t.Fatalf("chunk %d shard %d differs from the documented format", ci, si)
			}
			if Checksum(want[len(want)-32:]) != obj.Chunks[ci].Checksums[si] {
				t.Fatalf("chunk %d shard %d: metadata checksum is not the trailer", ci, si)
			}
			all.Write(want)
		}
	}
	const golden = "bdd21f5c9cfc4c25e850213ca8938c83199d183f17f39f531014344fb5e0ea8c"
	if sum := hex.EncodeToString(all.Sum(nil)); sum != golden {
		t.Errorf("digest of all shards %s, golden %s: stored bytes changed", sum, golden)
	}
}

// TestMetaRecordV1 opens a record built by hand from the documented layout.
func TestMetaRecordV1(t *testing.T) {
	master := testKey(7)
	salt := bytes.Repeat([]byte{0x5a}, 16)
	key, _ := hkdf.Key(sha256.New, master[:], salt, "zstor metadata key v1", 32)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	rec := []byte("a metadata record")
	sealed := append([]byte{1}, salt...)
	sealed = gcm.Seal(sealed, make([]byte, 12), rec, []byte("\x01/meta/key"))
	got, err := NewMetaSealer(master).Open(sealed, []byte("/meta/key"))
	if err != nil || !bytes.Equal(got, rec) {
		t.Fatalf("Open(hand-made record) = %q, %v", got, err)
	}
}

// TestMetaRecordV2 checks Seal's output against the documented layout: it
// opens with a hand-built GCM (version byte 2 in the associated data).
func TestMetaRecordV2(t *testing.T) {
	master := testKey(7)
	rec := []byte("a metadata record")
	sealed, err := NewMetaSealer(master).Seal(rec, []byte("/meta/key"))
	if err != nil {
		t.Fatal(err)
	}
	if sealed[0] != 2 || len(sealed) != 1+16+len(rec)+16 {
		t.Fatalf("sealed: version %d, %d bytes", sealed[0], len(sealed))
	}
	key, _ := hkdf.Key(sha256.New, master[:], sealed[1:17], "zstor metadata key v1", 32)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	got, err := gcm.Open(nil, make([]byte, 12), sealed[17:], []byte("\x02/meta/key"))
	if err != nil || !bytes.Equal(got, rec) {
		t.Fatalf("hand-made open = %q, %v", got, err)
	}
}

// FuzzDecodeChunk feeds arbitrary bytes as one shard (and as the only
// shard of a k=1 chunk): decoding must fail cleanly, never panic.
func FuzzDecodeChunk(f *testing.F) {
	// Deterministic (fixed object id), so every fuzz worker process
	// builds the same object as the one that made the seeds.
	key := testKey(3)
	enc, err := NewEncoder(key, Options{K: 1, N: 2, ChunkSize: 4096, Logger: quietLogger})
	if err != nil {
		f.Fatal(err)
	}
	enc.newID = func() ObjectID { return ObjectID{1, 2, 3} }
	var shards [][]byte
	obj, err := enc.Encode(context.Background(), bytes.NewReader(textData(100, 1)), func(_ context.Context, c *EncodedChunk) error {
		shards = c.Shards
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	dec, err := NewDecoder(key, obj, DecoderOptions{Logger: quietLogger})
	if err != nil {
		f.Fatal(err)
	}
	s := stored{shards: [][][]byte{shards}}
	f.Add(s.shards[0][0])
	f.Add(s.shards[0][1])
	f.Add([]byte("ZSHD\x01"))
	f.Fuzz(func(t *testing.T, shard []byte) {
		if _, _, err := InspectShard(key, shard); err == nil && !bytes.Equal(shard, s.shards[0][0]) && !bytes.Equal(shard, s.shards[0][1]) {
			t.Fatal("a forged shard verified")
		}
		plain, err := dec.DecodeChunk(0, [][]byte{shard, nil})
		if err == nil && !bytes.Equal(plain, textData(100, 1)) {
			t.Fatal("decoded to different plaintext")
		}
	})
}
