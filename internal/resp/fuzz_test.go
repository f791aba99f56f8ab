package resp

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"testing"
	"testing/iotest"
)

// fzRequest encodes args with the Writer.
func fzRequest(args ...string) []byte {
	var buf bytes.Buffer
	w := NewWriter(&buf, 64)
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	w.Command(bs...)
	w.Flush()
	return buf.Bytes()
}

// fzReadAll reads requests until the stream fails, checking the limits,
// and returns copies of the requests read (a nil entry for a non-fatal
// protocol error) and the final error.
func fzReadAll(t *testing.T, r io.Reader, size int) ([][][]byte, error) {
	rr := NewRequestReader(r, size, nil)
	var out [][][]byte
	for i := 0; ; i++ {
		if i > 1<<16 {
			t.Fatal("reader does not make progress")
		}
		args, err := rr.ReadRequest()
		if err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) && !pe.Fatal {
				out = append(out, nil)
				continue
			}
			return out, err
		}
		if len(args) == 0 {
			t.Fatal("empty request returned without an error")
		}
		if len(args) > MaxArgs {
			t.Fatalf("%d arguments returned, limit %d", len(args), MaxArgs)
		}
		req := make([][]byte, len(args))
		for j, a := range args {
			if len(a) > MaxPayload {
				t.Fatalf("argument of %d bytes returned, limit %d", len(a), MaxPayload)
			}
			req[j] = bytes.Clone(a)
		}
		// Aliasing: appending to one argument must not change the next.
		if len(args) > 1 {
			saved := bytes.Clone(args[1])
			_ = append(args[0], 'X')
			if !bytes.Equal(args[1], saved) {
				t.Fatal("arguments share capacity: appending to one overwrote the next")
			}
		}
		out = append(out, req)
	}
}

// FuzzRequestReader feeds arbitrary bytes to the request reader: it must
// never panic, never return more than 1024 arguments or an argument over
// 8 MiB, read the same requests whatever the buffer size and however the
// bytes arrive, and every request it accepts must survive a round trip
// through the Writer. The input is also taken as a list of arguments
// (split on 0xff) that the Writer encodes and the reader must read back.
func FuzzRequestReader(f *testing.F) {
	f.Add(fzRequest("PING"))
	f.Add(fzRequest("SET", "key", "value"))
	f.Add(append(fzRequest("GET", "k"), fzRequest("DEL", "k", "1700000000")...))
	f.Add(fzRequest("SET", "", ""))
	f.Add(fzRequest("SET", "bin\r\n\x00\xff", "\r\n$3\r\n"))
	f.Add([]byte("*0\r\n*1\r\n$4\r\nPING\r\n"))
	f.Add([]byte("*-1\r\n"))
	f.Add([]byte("PING\r\n"))
	f.Add([]byte("*1\r\n:1\r\n"))
	f.Add([]byte("*2\r\n$3\r\nGET\r\n$-1\r\n"))
	f.Add([]byte("*1\r\n$8388609\r\n"))
	f.Add([]byte("*1\r\n$8388608\r\nabc"))
	f.Add([]byte("*1025\r\n$1\r\na\r\n"))
	f.Add([]byte("*2\r\n$1\r\na\r\n$1\r\nbXY"))
	f.Add([]byte("*1\r\n$99999999999999999999999\r\n"))
	f.Add([]byte("*1\r\n$04\r\nPING\r\n"))
	f.Add([]byte("*1\r\n$4\nPING\r\n"))
	f.Add([]byte("*\r\n"))
	f.Add([]byte("\xff\xffSET\xffk\xffv"))
	f.Fuzz(func(t *testing.T, data []byte) {
		reqs, err := fzReadAll(t, bytes.NewReader(data), 4096)
		if err == nil {
			t.Fatal("stream ended without an error")
		}
		// Same requests whatever the buffer size and read sizes.
		reqs2, err2 := fzReadAll(t, iotest.OneByteReader(bytes.NewReader(data)), 16)
		if len(reqs2) != len(reqs) || err2.Error() != err.Error() {
			t.Fatalf("byte by byte: %d requests, %v; in one read: %d requests, %v", len(reqs2), err2, len(reqs), err)
		}
		for i := range reqs {
			if !fzEqual(reqs[i], reqs2[i]) {
				t.Fatalf("request %d differs between buffer sizes", i)
			}
		}
		for _, req := range reqs {
			if req == nil {
				continue
			}
			fzRoundTrip(t, req)
		}
		// The input as arguments.
		args := bytes.Split(data, []byte{0xff})
		if len(args) > MaxArgs {
			args = args[:MaxArgs]
		}
		fzRoundTrip(t, args)
	})
}

func fzRoundTrip(t *testing.T, args [][]byte) {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, 32)
	w.Command(args...)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "*" + strconv.Itoa(len(args)) + "\r\n"
	if !bytes.HasPrefix(buf.Bytes(), []byte(want)) {
		t.Fatalf("Writer output starts %q", buf.Bytes()[:min(buf.Len(), 20)])
	}
	got, err := fzReadAll(t, bytes.NewReader(buf.Bytes()), 64)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("round trip: stream ends with %v, want EOF", err)
	}
	if len(got) != 1 || !fzEqual(got[0], fzCut(args)) {
		t.Fatalf("round trip of %d arguments read back as %d requests", len(args), len(got))
	}
}

func fzEqual(a, b [][]byte) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// fzCut is what the reader returns for args: the first argument above
// LongArg bytes whole, the later ones cut to LongArg+1 bytes.
func fzCut(args [][]byte) [][]byte {
	out := make([][]byte, len(args))
	long := false
	for i, a := range args {
		out[i] = a
		if len(a) > LongArg {
			if long {
				out[i] = a[:LongArg+1]
			}
			long = true
		}
	}
	return out
}
