package zstor

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"qss/zstor/pipeline"
)

// recordVersion is the version of the JSON record inside the sealed
// metadata value (docs/zstor.md, "Metadata record contents").
const recordVersion = 1

// keyPadBand is the granularity of the key's padding: a record's size
// reveals the length of the (JSON-encoded) object key only as the number of
// keyPadBand-byte bands it needs, so every key up to keyPadBand bytes —
// nearly every path — makes records of the same size.
const keyPadBand = 256

// infoPathKey derives the key of the keyed hash that turns an object key
// (a path) into a metadata key, so the store never sees paths.
const infoPathKey = "zstor metadata path key v1"

// Location is where one shard lives: a backend (by identity,
// "address/namespace") and the seq id zdb assigned. A zero Location (empty
// Backend) means the shard has no copy.
type Location struct {
	Backend string
	Seq     uint64
}

// Record is everything zstor keeps about one stored file: the pipeline's
// object metadata plus the key, times and shard locations.
type Record struct {
	Key     string    // the object key: the path relative to root
	Stored  time.Time // when this version was committed
	ModTime time.Time // the source file's modification time
	// Mode is the source file's permission bits (0 in records written
	// before they were kept: retrieve then uses 0644).
	Mode fs.FileMode
	// Link is the target of a symbolic link stored as a link (store -r);
	// empty for a file. A link's object holds no bytes.
	Link      string
	Object    *pipeline.Object
	Locations [][]Location // [chunk][shard index]
}

// MinShards is the fewest shards any chunk of the record has a copy of:
// Object.N when complete, less when the object was stored degraded or a
// repair could not place every shard (a Location with no Backend).
func (r *Record) MinShards() int {
	least := r.Object.N
	for _, locs := range r.Locations {
		n := 0
		for _, l := range locs {
			if l.Backend != "" {
				n++
			}
		}
		least = min(least, n)
	}
	return least
}

// Degraded reports whether some shard of the record has no copy.
func (r *Record) Degraded() bool { return r.MinShards() < r.Object.N }

// recordJSON is the serialized form: backends are named once in a table and
// referred to by index; checksums are packed per chunk.
type recordJSON struct {
	V         int         `json:"v"`
	Key       string      `json:"key"`
	KeyPad    string      `json:"keypad"` // spaces: key + keypad fill whole bands
	Stored    time.Time   `json:"stored"`
	ModTime   time.Time   `json:"mtime"`
	Mode      uint32      `json:"mode,omitempty"`
	Link      string      `json:"link,omitempty"`
	Version   int         `json:"format"`
	ID        []byte      `json:"id"`
	K         int         `json:"k"`
	N         int         `json:"n"`
	ChunkSize int         `json:"chunk_size"`
	Compress  uint8       `json:"compression"`
	Size      int64       `json:"size"`
	Checksum  []byte      `json:"checksum"`
	Backends  []string    `json:"backends"`
	Chunks    []chunkJSON `json:"chunks"`
}

type chunkJSON struct {
	Compress    uint8    `json:"c"`
	PlainSize   int      `json:"plain"`
	CipherSize  int      `json:"cipher"`
	PayloadSize int      `json:"payload"`
	Padding     int      `json:"pad"`
	ShardSize   int      `json:"shard"`
	Sums        []byte   `json:"sums"` // n × 32 bytes
	Locs        [][2]int `json:"locs"` // per shard: [backend table index or -1, seq]
}

func encodeRecord(r *Record) ([]byte, error) {
	o := r.Object
	j := recordJSON{
		V: recordVersion, Key: r.Key, Stored: r.Stored.UTC(), ModTime: r.ModTime.UTC(),
		Mode: uint32(r.Mode.Perm()), Link: r.Link,
		Version: o.Version, ID: o.ID[:], K: o.K, N: o.N, ChunkSize: o.ChunkSize,
		Compress: uint8(o.Compression), Size: o.Size, Checksum: o.Checksum[:],
		KeyPad: keyPad(r.Key),
	}
	table := map[string]int{}
	for ci, c := range o.Chunks {
		cj := chunkJSON{Compress: uint8(c.Compression), PlainSize: c.PlainSize, CipherSize: c.CipherSize,
			PayloadSize: c.PayloadSize, Padding: c.Padding, ShardSize: c.ShardSize}
		for _, s := range c.Checksums {
			cj.Sums = append(cj.Sums, s[:]...)
		}
		for _, l := range r.Locations[ci] {
			if l.Backend == "" {
				cj.Locs = append(cj.Locs, [2]int{-1, 0})
				continue
			}
			bi, ok := table[l.Backend]
			if !ok {
				bi = len(j.Backends)
				table[l.Backend] = bi
				j.Backends = append(j.Backends, l.Backend)
			}
			cj.Locs = append(cj.Locs, [2]int{bi, int(l.Seq)})
		}
		j.Chunks = append(j.Chunks, cj)
	}
	return json.Marshal(j)
}

// keyPad returns the padding that brings the JSON encoding of key to a
// whole number of keyPadBand-byte bands (at least one), so the record's
// size does not tell the key's length.
func keyPad(key string) string {
	enc, err := json.Marshal(key)
	if err != nil {
		return ""
	}
	n := len(enc) - 2 // without the quotes
	target := max(1, (n+keyPadBand-1)/keyPadBand) * keyPadBand
	return strings.Repeat(" ", target-n)
}

func decodeRecord(b []byte) (*Record, error) {
	var j recordJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("metadata record: %w", err)
	}
	if j.V != recordVersion {
		return nil, fmt.Errorf("metadata record version %d, this build reads %d", j.V, recordVersion)
	}
	if len(j.ID) != pipeline.ObjectIDSize || len(j.Checksum) != pipeline.ChecksumSize {
		return nil, fmt.Errorf("metadata record: bad id or checksum length")
	}
	o := &pipeline.Object{Version: j.Version, K: j.K, N: j.N, ChunkSize: j.ChunkSize,
		Compression: pipeline.Compression(j.Compress), Size: j.Size}
	copy(o.ID[:], j.ID)
	copy(o.Checksum[:], j.Checksum)
	r := &Record{Key: j.Key, Stored: j.Stored, ModTime: j.ModTime, Mode: fs.FileMode(j.Mode).Perm(), Link: j.Link, Object: o}
	for ci, cj := range j.Chunks {
		c := pipeline.ChunkMeta{Index: uint64(ci), Final: ci == len(j.Chunks)-1,
			Compression: pipeline.Compression(cj.Compress), PlainSize: cj.PlainSize, CipherSize: cj.CipherSize,
			PayloadSize: cj.PayloadSize, Padding: cj.Padding, ShardSize: cj.ShardSize}
		if len(cj.Sums) != j.N*pipeline.ChecksumSize || len(cj.Locs) != j.N {
			return nil, fmt.Errorf("metadata record: chunk %d has %d checksum bytes and %d locations for n=%d", ci, len(cj.Sums), len(cj.Locs), j.N)
		}
		c.Checksums = make([]pipeline.Checksum, j.N)
		for i := range c.Checksums {
			copy(c.Checksums[i][:], cj.Sums[i*pipeline.ChecksumSize:])
		}
		locs := make([]Location, j.N)
		for i, l := range cj.Locs {
			if l[0] < 0 {
				continue
			}
			if l[0] >= len(j.Backends) || l[1] < 0 {
				return nil, fmt.Errorf("metadata record: chunk %d shard %d: bad location %v", ci, i, l)
			}
			locs[i] = Location{Backend: j.Backends[l[0]], Seq: uint64(l[1])}
		}
		o.Chunks = append(o.Chunks, c)
		r.Locations = append(r.Locations, locs)
	}
	return r, nil
}

// pathHasher maps object keys to metadata keys: hex HMAC-SHA256 under a key
// derived from the metadata master key, so a metadata backend learns nothing
// of the paths, and the same path always maps to the same record.
type pathHasher struct{ key []byte }

func newPathHasher(master pipeline.MasterKey) (*pathHasher, error) {
	k, err := hkdf.Key(sha256.New, master[:], nil, infoPathKey, 32)
	if err != nil {
		return nil, fmt.Errorf("derive metadata path key: %w", err)
	}
	return &pathHasher{key: k}, nil
}

func (h *pathHasher) metaKey(objectKey string) string {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(objectKey))
	return hex.EncodeToString(m.Sum(nil))
}
