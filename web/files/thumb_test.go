package files

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func testImage(w, h int) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 200, 255})
		}
	}
	return img
}

func encodeTo(t *testing.T, path string, enc func(*bytes.Buffer) error) {
	t.Helper()
	var b bytes.Buffer
	if err := enc(&b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// bombPNG is a valid PNG header claiming w×h pixels, without data.
func bombPNG(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func TestThumbnails(t *testing.T) {
	e := newEnv(t, Options{})
	src := testImage(600, 300)
	encodeTo(t, filepath.Join(e.dir, "a.png"), func(b *bytes.Buffer) error { return png.Encode(b, src) })
	encodeTo(t, filepath.Join(e.dir, "a.jpg"), func(b *bytes.Buffer) error { return jpeg.Encode(b, src, nil) })
	encodeTo(t, filepath.Join(e.dir, "a.gif"), func(b *bytes.Buffer) error { return gif.Encode(b, testImage(100, 200), nil) })
	cwebp, err := exec.LookPath("cwebp")
	if err != nil {
		t.Fatal("cwebp not found: install the Debian package webp")
	}
	if out, err := exec.Command(cwebp, "-quiet", "-lossless", filepath.Join(e.dir, "a.png"), "-o", filepath.Join(e.dir, "a.webp")).CombinedOutput(); err != nil {
		t.Fatalf("cwebp: %v %s", err, out)
	}
	for _, c := range []struct {
		name, size string
		w, h       int
	}{
		{"a.png", "", 256, 128},
		{"a.jpg", "100", 100, 50},
		{"a.gif", "512", 100, 200}, // never enlarged
		{"a.gif", "50", 25, 50},
		{"a.webp", "300", 300, 150},
	} {
		r := e.get("/api/files/thumb?path=/" + c.name + "&size=" + c.size)
		want(t, r, http.StatusOK)
		if r.h.Get("Content-Type") != "image/jpeg" || r.h.Get("ETag") == "" {
			t.Fatalf("%s: headers %v", c.name, r.h)
		}
		img, err := jpeg.Decode(bytes.NewReader(r.body))
		if err != nil {
			t.Fatalf("%s: not a JPEG: %v", c.name, err)
		}
		if b := img.Bounds(); b.Dx() != c.w || b.Dy() != c.h {
			t.Errorf("%s size %s: %dx%d, want %dx%d", c.name, c.size, b.Dx(), b.Dy(), c.w, c.h)
		}
		// The colour survives scaling: the blue channel is 200 everywhere.
		if _, _, bl, _ := img.At(c.w/2, c.h/2).RGBA(); bl>>8 < 180 || bl>>8 > 220 {
			t.Errorf("%s: blue %d", c.name, bl>>8)
		}
	}
	// Cached: the same request again is a cache hit; a changed file is not.
	n := e.api.thumbs.Len()
	r1 := e.get("/api/files/thumb?path=/a.png")
	if e.api.thumbs.Len() != n {
		t.Fatal("a repeated thumbnail was made again")
	}
	r304 := e.do("GET", "/api/files/thumb?path=/a.png", nil, "If-None-Match", r1.h.Get("ETag"))
	if r304.code != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", r304.code)
	}
	encodeTo(t, filepath.Join(e.dir, "a.png"), func(b *bytes.Buffer) error { return png.Encode(b, testImage(40, 40)) })
	r2 := e.get("/api/files/thumb?path=/a.png")
	img, _ := jpeg.Decode(bytes.NewReader(r2.body))
	if img == nil || img.Bounds().Dx() != 40 || r2.h.Get("ETag") == r1.h.Get("ETag") {
		t.Fatal("a changed image was served from the cache")
	}

	// Refusals.
	if err := os.WriteFile(filepath.Join(e.dir, "bomb.png"), bombPNG(100000, 100000), 0o644); err != nil {
		t.Fatal(err)
	}
	e.write("text.txt", "not an image")
	e.write("broken.png", string(bombPNG(10, 10)))
	want(t, e.get("/api/files/thumb?path=/bomb.png"), http.StatusRequestEntityTooLarge)
	want(t, e.get("/api/files/thumb?path=/text.txt"), http.StatusUnsupportedMediaType)
	want(t, e.get("/api/files/thumb?path=/broken.png"), http.StatusUnsupportedMediaType)
	want(t, e.get("/api/files/thumb?path=/a.png&size=513"), http.StatusBadRequest)
	want(t, e.get("/api/files/thumb?path=/a.png&size=0"), http.StatusBadRequest)
	want(t, e.get("/api/files/thumb?path=/a.png&size=x"), http.StatusBadRequest)
	want(t, e.get("/api/files/thumb?path=/"), http.StatusBadRequest)
	want(t, e.get("/api/files/thumb?path=/none.png"), http.StatusNotFound)
}

// headerPNG is a valid PNG header claiming w×h pixels of the given bit
// depth and color type, without data.
func headerPNG(w, h uint32, depth, colorType byte) []byte {
	b := bombPNG(w, h)
	// Rewrite IHDR's depth and color type, and its CRC.
	ihdr := b[12 : 12+4+13]
	ihdr[4+8], ihdr[4+9] = depth, colorType
	binary.BigEndian.PutUint32(b[12+4+13:], crc32.ChecksumIEEE(ihdr))
	return b
}

// headerJPEG is a JPEG header (SOI and a start of frame: sof 0xC0
// baseline, 0xC2 progressive) claiming w×h pixels in three components,
// without data.
func headerJPEG(w, h uint16, sof byte) []byte {
	b := []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 'x', 'x', 0xFF, sof, 0x00, 0x11, 0x08}
	b = binary.BigEndian.AppendUint16(b, h)
	b = binary.BigEndian.AppendUint16(b, w)
	b = append(b, 0x03, 0x01, 0x11, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01)
	return append(b, 0xFF, 0xDA, 0x00, 0x02, 0xFF, 0xD9)
}

// TestThumbMemoryBombs: images under the pixel limit whose decoding
// still takes far more memory than their pixels suggest (16-bit PNG:
// 8 bytes a pixel; progressive JPEG: its coefficients, 4 bytes a pixel
// and component, besides the image) are refused with 413 from their
// header; ordinary ones of the same size are decoded (here: found
// damaged, 415).
func TestThumbMemoryBombs(t *testing.T) {
	e := newEnv(t, Options{})
	for name, c := range map[string]struct {
		data []byte
		code int
	}{
		"png16.png":       {headerPNG(6000, 6000, 16, 6), http.StatusRequestEntityTooLarge},
		"png8.png":        {headerPNG(6000, 6000, 8, 6), http.StatusUnsupportedMediaType},
		"progressive.jpg": {headerJPEG(4500, 4500, 0xC2), http.StatusRequestEntityTooLarge},
		"baseline.jpg":    {headerJPEG(4500, 4500, 0xC0), http.StatusUnsupportedMediaType},
	} {
		if err := os.WriteFile(filepath.Join(e.dir, name), c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		r := e.get("/api/files/thumb?path=/" + name)
		if r.code != c.code {
			t.Errorf("%s: %s, want %d", name, r, c.code)
		}
	}
}
