package files

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif" // registers GIF for image.Decode
	"image/jpeg"
	_ "image/png" // registers PNG for image.Decode
	"io"
	"net/http"
	"strconv"

	"golang.org/x/image/draw"
	_ "golang.org/x/image/webp" // registers WebP for image.Decode

	"qss/web/fsys"
)

// Thumbnail bounds.
const (
	DefaultThumbSize = 256
	MaxThumbSize     = 512
	// MaxThumbPixels refuses images whose decoded size would be over
	// this many pixels (about 200 MB as RGBA): a small file can claim
	// a huge image (a decompression bomb). The header is read first.
	MaxThumbPixels = 50_000_000
	// MaxThumbMemory refuses images whose decoding would take more
	// memory than this, as estimated from the header: 16-bit images
	// take 8 bytes a pixel, and a progressive JPEG keeps its
	// coefficients (4 bytes a pixel and component) besides the image,
	// so a 575 KB progressive JPEG under MaxThumbPixels takes 700 MB.
	MaxThumbMemory = 256 << 20
	// thumbCacheEntries thumbnails are kept (at most ~50 KB each at 512).
	thumbCacheEntries = 512
	// thumbConcurrency images are decoded at a time, to bound memory.
	thumbConcurrency = 2
	// smallSource is the pixel count up to which the better, slower
	// Catmull-Rom kernel is used.
	smallSource = 4_000_000
)

func (a *API) thumb(w http.ResponseWriter, r *http.Request) {
	name, err := queryPath(r, "path")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	size := DefaultThumbSize
	if s := r.URL.Query().Get("size"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxThumbSize {
			a.fail(w, r, badf("size: a number from 1 to %d", MaxThumbSize))
			return
		}
		size = n
	}
	f, st, ok := a.openFile(w, r, name)
	if !ok {
		return
	}
	defer f.Close()
	etag := fmt.Sprintf("\"t%d-%s", size, ETag(st)[1:])
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", "private, max-age=3600")
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	key := name + "\x00" + etag
	data, ok := a.thumbs.Get(key)
	if !ok {
		select {
		case a.thumbSem <- struct{}{}:
		case <-r.Context().Done():
			return
		}
		data, err = makeThumb(f, size)
		<-a.thumbSem
		if err != nil {
			h.Del("ETag")
			h.Del("Cache-Control")
			var nt *notThumbable
			if errors.As(err, &nt) {
				WriteJSONError(w, nt.code, fmt.Sprintf("%s: %s", fsys.Display(name), nt.msg))
				return
			}
			a.fail(w, r, err)
			return
		}
		a.thumbs.Add(key, data)
	}
	SetSafeHeaders(h)
	h.Set("Content-Type", "image/jpeg")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

// notThumbable is an image refused with its HTTP status.
type notThumbable struct {
	code int
	msg  string
}

func (e *notThumbable) Error() string { return e.msg }

// makeThumb decodes the image in f (PNG, JPEG, GIF's first frame, WebP)
// and encodes it as a JPEG fitting in size×size, never enlarged,
// transparency over white.
func makeThumb(f io.ReadSeeker, size int) ([]byte, error) {
	cfg, format, err := image.DecodeConfig(f)
	if err != nil {
		return nil, &notThumbable{http.StatusUnsupportedMediaType, "not a PNG, JPEG, GIF or WebP image (" + err.Error() + ")"}
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > MaxThumbPixels {
		return nil, &notThumbable{http.StatusRequestEntityTooLarge,
			fmt.Sprintf("a %dx%d %s image is over the thumbnail limit of %d pixels", cfg.Width, cfg.Height, format, MaxThumbPixels)}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if need, err := decodeMemory(f, cfg, format); err != nil {
		return nil, err
	} else if need > MaxThumbMemory {
		return nil, &notThumbable{http.StatusRequestEntityTooLarge,
			fmt.Sprintf("a %dx%d %s image takes about %d MB to decode, over the thumbnail limit of %d MB",
				cfg.Width, cfg.Height, format, need>>20, MaxThumbMemory>>20)}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	src, _, err := image.Decode(f)
	if err != nil {
		return nil, &notThumbable{http.StatusUnsupportedMediaType, "a damaged " + format + " image (" + err.Error() + ")"}
	}
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	if w > size || h > size {
		if w >= h {
			w, h = size, max(1, h*size/b.Dx())
		} else {
			w, h = max(1, w*size/b.Dy()), size
		}
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(dst, dst.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	var scaler draw.Interpolator = draw.ApproxBiLinear
	if b.Dx()*b.Dy() <= smallSource {
		scaler = draw.CatmullRom
	}
	scaler.Scale(dst, dst.Bounds(), src, b, draw.Over, nil)
	var out bytes.Buffer
	if err := jpeg.Encode(&out, dst, &jpeg.Options{Quality: 80}); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// decodeMemory estimates the bytes image.Decode takes for the image of
// cfg, whose file f is at its start: 4 bytes a pixel (8 for 16-bit color
// models) and, for a progressive JPEG, 4 more a pixel and component for
// its coefficients (at full resolution: the worst case).
func decodeMemory(f io.Reader, cfg image.Config, format string) (int64, error) {
	pixels := int64(cfg.Width) * int64(cfg.Height)
	perPixel := int64(4)
	switch cfg.ColorModel {
	case color.RGBA64Model, color.NRGBA64Model, color.Gray16Model:
		perPixel = 8
	}
	if format == "jpeg" {
		comps, err := jpegProgressive(f)
		if err != nil {
			return 0, err
		}
		perPixel += 4 * int64(comps)
	}
	return pixels * perPixel, nil
}

// jpegProgressive reads a JPEG's markers up to its start of frame and
// returns the number of components when it is progressive (SOF2), 0
// otherwise.
func jpegProgressive(f io.Reader) (int, error) {
	br := bufio.NewReader(f)
	var soi [2]byte
	if _, err := io.ReadFull(br, soi[:]); err != nil || soi != [2]byte{0xFF, 0xD8} {
		return 0, &notThumbable{http.StatusUnsupportedMediaType, "a damaged jpeg image (no start of image)"}
	}
	for range 1000 { // segments before the frame: bounded
		var m [4]byte
		if _, err := io.ReadFull(br, m[:2]); err != nil {
			return 0, &notThumbable{http.StatusUnsupportedMediaType, "a damaged jpeg image (" + err.Error() + ")"}
		}
		for m[1] == 0xFF { // fill bytes
			var err error
			if m[1], err = br.ReadByte(); err != nil {
				return 0, &notThumbable{http.StatusUnsupportedMediaType, "a damaged jpeg image (" + err.Error() + ")"}
			}
		}
		if m[0] != 0xFF {
			return 0, &notThumbable{http.StatusUnsupportedMediaType, "a damaged jpeg image (no marker)"}
		}
		if _, err := io.ReadFull(br, m[2:]); err != nil {
			return 0, &notThumbable{http.StatusUnsupportedMediaType, "a damaged jpeg image (" + err.Error() + ")"}
		}
		n := int(m[2])<<8 | int(m[3])
		switch m[1] {
		case 0xC0, 0xC1: // baseline, extended sequential
			return 0, nil
		case 0xC2: // progressive: precision(1) height(2) width(2) components(1)
			var h [6]byte
			if _, err := io.ReadFull(br, h[:]); err != nil {
				return 0, &notThumbable{http.StatusUnsupportedMediaType, "a damaged jpeg image (" + err.Error() + ")"}
			}
			return int(h[5]), nil
		}
		if n < 2 {
			return 0, &notThumbable{http.StatusUnsupportedMediaType, "a damaged jpeg image (bad segment length)"}
		}
		if _, err := br.Discard(n - 2); err != nil {
			return 0, &notThumbable{http.StatusUnsupportedMediaType, "a damaged jpeg image (" + err.Error() + ")"}
		}
	}
	return 0, &notThumbable{http.StatusUnsupportedMediaType, "a damaged jpeg image (no frame)"}
}
