package pipeline

import (
	"fmt"
	"strings"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Compression is a chunk compression algorithm. Its numeric value is stored
// in shard headers and metadata, so values never change meaning.
type Compression uint8

// Compression algorithms. Snappy, S2 and LZ4 use their block formats, zstd
// one frame: the plaintext length is recorded separately, so no stream
// framing is needed.
const (
	CompressionNone   Compression = 0 // stored as is
	CompressionSnappy Compression = 1 // Snappy block format (0-stor_v2's only algorithm)
	CompressionZstd   Compression = 2 // Zstandard frame, default level
	CompressionS2     Compression = 3 // S2 block format (Snappy extension, faster and smaller)
	CompressionLZ4    Compression = 4 // LZ4 block format
)

var compressionNames = map[Compression]string{
	CompressionNone:   "none",
	CompressionSnappy: "snappy",
	CompressionZstd:   "zstd",
	CompressionS2:     "s2",
	CompressionLZ4:    "lz4",
}

// CompressionNames lists the names ParseCompression accepts.
func CompressionNames() []string { return []string{"none", "snappy", "zstd", "s2", "lz4"} }

// ParseCompression returns the algorithm with the given name, in any case.
func ParseCompression(name string) (Compression, error) {
	l := strings.ToLower(name)
	for c, n := range compressionNames {
		if n == l {
			return c, nil
		}
	}
	return 0, fmt.Errorf("unknown compression algorithm %q (want one of %s)", name, strings.Join(CompressionNames(), ", "))
}

// String returns the algorithm's name.
func (c Compression) String() string {
	if n, ok := compressionNames[c]; ok {
		return n
	}
	return fmt.Sprintf("compression(%d)", uint8(c))
}

// Valid reports whether c is a known algorithm.
func (c Compression) Valid() bool {
	_, ok := compressionNames[c]
	return ok
}

// The zstd encoder and decoder are safe for concurrent use of EncodeAll and
// DecodeAll and costly to create, so the package shares one of each.
var (
	zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(false))
		if err != nil {
			panic("pipeline: zstd encoder: " + err.Error())
		}
		return e
	})
	zstdDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxChunkCap), zstd.WithDecoderConcurrency(0))
		if err != nil {
			panic("pipeline: zstd decoder: " + err.Error())
		}
		return d
	})
)

// lz4Compressors recycles LZ4 compressors (each holds a 64 KiB hash table
// and is not safe for concurrent use).
var lz4Compressors = sync.Pool{New: func() any { return new(lz4.Compressor) }}

// compressBound is the largest output compress can produce for n input
// bytes (before giving up on the algorithm).
func compressBound(c Compression, n int) int {
	switch c {
	case CompressionSnappy:
		return snappy.MaxEncodedLen(n)
	case CompressionS2:
		return s2.MaxEncodedLen(n)
	case CompressionLZ4:
		return lz4.CompressBlockBound(n)
	case CompressionZstd:
		// zstd's worst case is a few bytes per 128 KiB block plus a header.
		return n + n/128 + 1024
	}
	return n
}

// Sampling: a chunk is compressed only when one of a few samples of it
// shrinks by at least 1/sampleGain. Compressing an incompressible chunk
// (already compressed or encrypted data, media) only to throw the result
// away cost a store of such data about a tenth of its CPU; the samples
// cost about 2 % of that. A chunk whose samples do not compress but whose
// other parts would is stored uncompressed: space, never correctness.
const (
	sampleSize  = 16 << 10
	sampleCount = 4
	sampleGain  = 64 // a sample must shrink by at least 1/64 (1.6 %)
)

// worthCompressing reports whether src (a whole chunk) may shrink under c,
// from sampleCount evenly spread samples of sampleSize bytes; scratch is a
// buffer it may use (it grows it when too small). Chunks too small to sample
// are always worth trying.
func worthCompressing(c Compression, src []byte, scratch *[]byte) bool {
	if len(src) < 4*sampleCount*sampleSize {
		return true
	}
	if bound := compressBound(c, sampleSize); cap(*scratch) < bound {
		*scratch = make([]byte, bound)
	}
	step := (len(src) - sampleSize) / (sampleCount - 1)
	for i := range sampleCount {
		sample := src[i*step : i*step+sampleSize]
		if out, ok := compress(c, (*scratch)[:0], sample); ok && len(out) <= sampleSize-sampleSize/sampleGain {
			return true
		}
	}
	return false
}

// compress compresses src into dst (which should have capacity for
// compressBound) and reports whether the result is smaller than src. When it
// is not, the caller stores src uncompressed.
func compress(c Compression, dst, src []byte) ([]byte, bool) {
	var out []byte
	switch c {
	case CompressionSnappy:
		out = snappy.Encode(dst[:cap(dst)], src)
	case CompressionS2:
		out = s2.Encode(dst[:cap(dst)], src)
	case CompressionZstd:
		out = zstdEncoder().EncodeAll(src, dst[:0])
	case CompressionLZ4:
		lc := lz4Compressors.Get().(*lz4.Compressor)
		n, err := lc.CompressBlock(src, dst[:cap(dst)])
		lz4Compressors.Put(lc)
		if err != nil || n == 0 { // 0: incompressible
			return nil, false
		}
		out = dst[:n]
	default:
		return nil, false
	}
	return out, len(out) < len(src)
}

// decompress decompresses src, which must expand to exactly plainSize bytes,
// into dst (which must have capacity plainSize).
func decompress(c Compression, dst, src []byte, plainSize int) ([]byte, error) {
	var (
		out []byte
		err error
	)
	switch c {
	case CompressionNone:
		out = append(dst[:0], src...)
	case CompressionSnappy, CompressionS2:
		var n int
		if c == CompressionSnappy {
			n, err = snappy.DecodedLen(src)
		} else {
			n, err = s2.DecodedLen(src)
		}
		if err == nil && n != plainSize {
			return nil, fmt.Errorf("%s: decoded length %d, want %d", c, n, plainSize)
		}
		if err == nil {
			if c == CompressionSnappy {
				out, err = snappy.Decode(dst[:plainSize], src)
			} else {
				out, err = s2.Decode(dst[:plainSize], src)
			}
		}
	case CompressionZstd:
		out, err = zstdDecoder().DecodeAll(src, dst[:0])
	case CompressionLZ4:
		var n int
		n, err = lz4.UncompressBlock(src, dst[:plainSize])
		out = dst[:n]
	default:
		return nil, fmt.Errorf("unknown compression %d", uint8(c))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	if len(out) != plainSize {
		return nil, fmt.Errorf("%s: decompressed %d bytes, want %d", c, len(out), plainSize)
	}
	return out, nil
}
