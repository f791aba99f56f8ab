package resp

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// testAlloc counts what it hands out and can refuse.
type testAlloc struct {
	held, calls int
	refuse      error
}

func (a *testAlloc) Alloc(n int) ([]byte, error) {
	a.calls++
	if a.refuse != nil {
		return nil, a.refuse
	}
	a.held += n
	return make([]byte, n), nil
}

func (a *testAlloc) Free(b []byte) { a.held -= len(b) }

func TestLongArguments(t *testing.T) {
	long1 := strings.Repeat("a", InlineArg+1)
	long2 := strings.Repeat("b", InlineArg+5)
	mid := strings.Repeat("c", 1000)
	in := append(fzRequest("SET", "k", long1, long2, mid, "ts"), fzRequest("GET", mid, long1)...)
	a := &testAlloc{}
	rr := NewRequestReader(bytes.NewReader(in), 4096, a)
	args, err := rr.ReadRequest()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"SET", "k", long1, long2[:LongArg+1], mid[:LongArg+1], "ts"}
	for i := range want {
		if string(args[i]) != want[i] {
			t.Errorf("argument %d: %d bytes, want %d", i, len(args[i]), len(want[i]))
		}
	}
	if a.calls != 1 || a.held != len(long1) || !rr.HoldsLong() {
		t.Errorf("allocator: %d calls, %d bytes held, want 1 and %d", a.calls, a.held, len(long1))
	}
	// a first long argument up to InlineArg stays in the reader's buffer
	args, err = rr.ReadRequest()
	if err != nil {
		t.Fatal(err)
	}
	if string(args[1]) != mid || string(args[2]) != long1[:LongArg+1] {
		t.Errorf("second request: %d and %d bytes", len(args[1]), len(args[2]))
	}
	if a.calls != 1 || a.held != 0 || rr.HoldsLong() {
		t.Errorf("after the next request: %d calls, %d bytes held", a.calls, a.held)
	}
	if _, err := rr.ReadRequest(); !errors.Is(err, io.EOF) {
		t.Errorf("end: %v", err)
	}
	if cap(rr.arena) > keepArena {
		t.Errorf("arena of %d bytes kept", cap(rr.arena))
	}
}

func TestAllocatorRefuses(t *testing.T) {
	refusal := &ProtocolError{Text: "too large"}
	a := &testAlloc{refuse: refusal}
	in := append(fzRequest("SET", "k", strings.Repeat("v", InlineArg+1), strings.Repeat("w", 3000)), fzRequest("PING")...)
	rr := NewRequestReader(bytes.NewReader(in), 4096, a)
	if _, err := rr.ReadRequest(); err != refusal {
		t.Fatalf("refused request: %v", err)
	}
	args, err := rr.ReadRequest()
	if err != nil || len(args) != 1 || string(args[0]) != "PING" {
		t.Fatalf("request after the refused one: %q, %v", args, err)
	}
	// any other error ends the stream
	a.refuse = io.ErrClosedPipe
	rr = NewRequestReader(bytes.NewReader(in), 4096, a)
	if _, err := rr.ReadRequest(); err != io.ErrClosedPipe {
		t.Fatalf("allocator failure: %v", err)
	}
}

func TestTooManyArgumentsAtOnce(t *testing.T) {
	// only the header: answered without waiting for the arguments
	rr := NewRequestReader(io.MultiReader(strings.NewReader("*1025\r\n"), blockingReader{}), 64, nil)
	_, err := rr.ReadRequest()
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Text != "Too many arguments" || !pe.Fatal {
		t.Fatalf("*1025: %v", err)
	}
}

// blockingReader stands for arguments not sent yet: reading it is an error.
type blockingReader struct{}

func (blockingReader) Read([]byte) (int, error) { return 0, errors.New("read past the header") }
