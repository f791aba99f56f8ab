package pipeline

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
)

// KeySize is the size of a master key and of every derived key: AES-256.
const KeySize = 32

// HKDF info strings. Changing one changes every derived key, so each is tied
// to a format version.
const (
	infoDataKey     = "zstor data key v1"
	infoShardKey    = "zstor shard key v1"
	infoMetadataKey = "zstor metadata key v1"
)

// MasterKey is the 32-byte secret all data and metadata keys derive from. It
// never leaves the owner's machine and is never written into metadata.
//
// Its String, GoString and LogValue methods print a placeholder, so a key
// cannot leak through a log line or an error message by accident.
type MasterKey [KeySize]byte

// ParseMasterKey decodes a key written as 64 hex digits (0-stor_v2's
// `[encryption] key`).
func ParseMasterKey(s string) (MasterKey, error) {
	var k MasterKey
	b, err := hex.DecodeString(s)
	if err != nil {
		return k, fmt.Errorf("key is not hex: %w", err)
	}
	if len(b) != KeySize {
		return k, fmt.Errorf("key is %d bytes (%d hex digits), want %d bytes (%d hex digits)", len(b), len(s), KeySize, 2*KeySize)
	}
	copy(k[:], b)
	return k, nil
}

// String returns a placeholder, never the key.
func (MasterKey) String() string { return "MasterKey(redacted)" }

// GoString returns a placeholder, never the key.
func (MasterKey) GoString() string { return "MasterKey(redacted)" }

// LogValue keeps the key out of slog output.
func (MasterKey) LogValue() slog.Value { return slog.StringValue("redacted") }

// ObjectIDSize is the size of an object id.
const ObjectIDSize = 16

// ObjectID identifies one stored version of a file. It is random, which is
// what makes every object's data key unique (see the package documentation).
type ObjectID [ObjectIDSize]byte

// NewObjectID returns a random object id from crypto/rand.
func NewObjectID() ObjectID {
	var id ObjectID
	rand.Read(id[:]) // never fails (crypto/rand contract since Go 1.24)
	return id
}

// String returns the id as 32 hex digits.
func (id ObjectID) String() string { return hex.EncodeToString(id[:]) }

// ChecksumSize is the size of a BLAKE3-256 checksum.
const ChecksumSize = 32

// Checksum is a BLAKE3-256 digest: of a whole file's plaintext (unkeyed), or
// a shard's checksum (keyed with the object's shard key, over its header and
// payload).
type Checksum [ChecksumSize]byte

// String returns the checksum as 64 hex digits (what `zstor check` prints).
func (c Checksum) String() string { return hex.EncodeToString(c[:]) }

// IsZero reports whether c is all zero, meaning "not recorded".
func (c Checksum) IsZero() bool { return c == Checksum{} }

// deriveKey returns HKDF-SHA256(master, salt, info), 32 bytes.
func deriveKey(master MasterKey, salt []byte, info string) []byte {
	k, err := hkdf.Key(sha256.New, master[:], salt, info, KeySize)
	if err != nil {
		// Only possible for an output longer than 255 hash blocks.
		panic("pipeline: hkdf: " + err.Error())
	}
	return k
}

// objectKeys are the keys of one object, derived once per Encode or Decoder.
type objectKeys struct {
	aead     cipher.AEAD // AES-256-GCM under the data key
	shardKey []byte      // BLAKE3 key for shard checksums
}

func newObjectKeys(master MasterKey, id ObjectID) (*objectKeys, error) {
	aead, err := newGCM(deriveKey(master, id[:], infoDataKey))
	if err != nil {
		return nil, err
	}
	return &objectKeys{aead: aead, shardKey: deriveKey(master, id[:], infoShardKey)}, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return aead, nil
}

// chunkNonce is the GCM nonce of a chunk: 4 zero bytes and the chunk index,
// big-endian. See the package documentation for why it is never reused.
func chunkNonce(index uint64) []byte {
	var n [12]byte
	binary.BigEndian.PutUint64(n[4:], index)
	return n[:]
}

// adSize is the length of a chunk's associated data.
const adSize = 37

// chunkAD is the associated data that binds a chunk's ciphertext to its
// object, position and layout (docs/zstor-format.md, "Associated data").
func chunkAD(id ObjectID, c *ChunkMeta, k, n, chunkSize int) []byte {
	ad := make([]byte, adSize)
	ad[0] = FormatVersion
	ad[1] = c.flags()
	ad[2] = byte(c.Compression)
	ad[3] = byte(k)
	ad[4] = byte(n)
	copy(ad[5:21], id[:])
	binary.LittleEndian.PutUint64(ad[21:29], c.Index)
	binary.LittleEndian.PutUint32(ad[29:33], uint32(chunkSize))
	binary.LittleEndian.PutUint32(ad[33:37], uint32(c.PlainSize))
	return ad
}
