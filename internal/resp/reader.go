// Package resp reads and writes RESP2, the Redis serialization protocol that
// 0-db speaks. The server side reads requests (arrays of bulk strings) with
// the limits and error texts of 0-db v2; the client side reads any reply.
//
// Both readers reuse their buffers: a request's arguments alias memory that
// the next call overwrites. Callers that keep an argument past the next read
// must copy it.
package resp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Limits of 0-db v2's request parser.
const (
	MaxArgs        = 1024    // more arguments than this: ErrTooManyArgs
	MaxPayload     = 8 << 20 // a bulk string over this: ErrPayloadTooBig
	maxHeaderBytes = 64      // longest "*N\r\n" or "$N\r\n" line we accept
)

// What a request may hold. No 0-db command uses more than one long
// argument: keys, names, passwords, cursors and numbers are at most 255
// bytes, only SET's value is longer. So a request keeps its first
// argument above LongArg bytes whole and cuts the others to LongArg+1
// bytes, the rest read and dropped: every check a command makes on such
// an argument (key too large, invalid key, password too long, ...) only
// needs it to be longer than 255 bytes. A request thus holds at most one
// long argument however many it announces.
const (
	LongArg = 256
	// InlineArg: a long argument up to this size is kept in the reader's
	// own buffer; a longer one in a buffer from the Allocator.
	InlineArg = 16 << 10
	// keepArena: the reader's buffer is dropped after a request that grew
	// it past this, so that an idle connection holds no large buffer.
	keepArena = 32 << 10
)

// ProtocolError is a malformed request. Text is the error reply 0-db sends
// for it (without the leading '-'); Fatal says the connection must be closed
// after replying because the stream cannot be resynchronised.
type ProtocolError struct {
	Text  string
	Fatal bool
}

func (e *ProtocolError) Error() string { return e.Text }

// The request errors of 0-db v2, with their exact reply texts.
var (
	ErrInline      = &ProtocolError{Text: "Malformed request, array expected", Fatal: true}
	ErrMissingArgs = &ProtocolError{Text: "Missing arguments"}
	// 0-db never reads another request on that connection: the arguments
	// stay in its buffer, every later packet gets the same reply, and the
	// connection is dropped once its buffer is full. Ours closes at once.
	ErrTooManyArgs   = &ProtocolError{Text: "Too many arguments", Fatal: true}
	ErrMalformed     = &ProtocolError{Text: "Malformed query string", Fatal: true}
	ErrPayloadTooBig = &ProtocolError{Text: "Payload too big", Fatal: true}
)

// Allocator provides the buffer of a request's long argument above
// InlineArg bytes. Alloc may block (a server waiting for memory) and may
// fail: a non-fatal *ProtocolError becomes the request's error reply (the
// rest of the request is read and dropped), any other error ends the
// connection. Free takes back a buffer Alloc returned, with the length it
// was asked for.
type Allocator interface {
	Alloc(n int) ([]byte, error)
	Free(b []byte)
}

// RequestReader reads client requests: RESP arrays of bulk strings.
type RequestReader struct {
	br    *bufio.Reader
	args  [][]byte
	arena []byte
	alloc Allocator
	long  []byte // the current request's long argument from alloc
}

// NewRequestReader reads requests from r through a buffer of size bytes.
// Long arguments above InlineArg bytes come from alloc (the heap if nil).
func NewRequestReader(r io.Reader, size int, alloc Allocator) *RequestReader {
	return &RequestReader{br: bufio.NewReaderSize(r, size), alloc: alloc}
}

// Buffered reports how many bytes of further requests are already read
// from the connection; a server flushes its replies only when this is zero,
// so a pipelined batch gets one write.
func (rr *RequestReader) Buffered() int { return rr.br.Buffered() }

// HoldsLong reports whether the last request holds a buffer from the
// Allocator (until Release).
func (rr *RequestReader) HoldsLong() bool { return rr.long != nil }

// Release ends the use of the last request's arguments: its long argument
// goes back to the Allocator and an oversized buffer is dropped. The next
// ReadRequest does it too.
func (rr *RequestReader) Release() {
	if rr.long != nil {
		if rr.alloc != nil {
			rr.alloc.Free(rr.long)
		}
		rr.long = nil
	}
	if cap(rr.arena) > keepArena {
		rr.arena = nil
	}
	if cap(rr.args) > 64 {
		rr.args = nil
	}
}

// ReadRequest reads one request. The returned slices are valid until the
// next call or Release. A *ProtocolError describes a malformed request; any
// other error comes from the connection (io.EOF on a clean close between
// requests).
func (rr *RequestReader) ReadRequest() ([][]byte, error) {
	rr.Release()
	first, err := rr.br.ReadByte()
	if err != nil {
		return nil, err
	}
	if first != '*' {
		return nil, ErrInline
	}
	n, err := rr.readLength()
	if err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, ErrMissingArgs
	}
	if n > MaxArgs {
		// Answered at once, before any argument is read (0-db's own test
		// suite sends the header alone and waits for this reply).
		return nil, ErrTooManyArgs
	}
	rr.args = rr.args[:0]
	rr.arena = rr.arena[:0]
	// Offsets into arena, resolved to slices once the arena stops growing;
	// off < 0 marks the long argument from the allocator.
	type span struct{ off, n int }
	var spansBuf [8]span
	spans := spansBuf[:0]
	haveLong := false
	var failed error // a non-fatal error: the rest of the request is dropped
	for i := int64(0); i < n; i++ {
		size, err := rr.readBulkHeader()
		if err != nil {
			rr.Release()
			return nil, err
		}
		keep := size
		switch {
		case failed != nil:
			keep = 0
		case size <= LongArg:
		case haveLong:
			keep = LongArg + 1 // a second long argument: cut
		case size <= InlineArg:
			haveLong = true
		default:
			haveLong = true
			buf, err := rr.allocLong(size)
			if err != nil {
				var pe *ProtocolError
				if !errors.As(err, &pe) || pe.Fatal {
					return nil, err
				}
				failed, keep = err, 0
				break
			}
			rr.long = buf
			if _, err := io.ReadFull(rr.br, buf); err != nil {
				rr.Release()
				return nil, unexpected(err)
			}
			if err := rr.expectCRLF(); err != nil {
				rr.Release()
				return nil, err
			}
			spans = append(spans, span{-1, size})
			continue
		}
		off := len(rr.arena)
		rr.arena = grow(rr.arena, keep)
		if _, err := io.ReadFull(rr.br, rr.arena[off:]); err != nil {
			rr.Release()
			return nil, unexpected(err)
		}
		if _, err := rr.br.Discard(size - keep); err != nil {
			rr.Release()
			return nil, unexpected(err)
		}
		if err := rr.expectCRLF(); err != nil {
			rr.Release()
			return nil, err
		}
		spans = append(spans, span{off, keep})
	}
	if failed != nil {
		rr.Release()
		return nil, failed
	}
	for _, s := range spans {
		if s.off < 0 {
			rr.args = append(rr.args, rr.long[:s.n:s.n])
			continue
		}
		rr.args = append(rr.args, rr.arena[s.off:s.off+s.n:s.off+s.n])
	}
	return rr.args, nil
}

func (rr *RequestReader) allocLong(n int) ([]byte, error) {
	if rr.alloc == nil {
		return make([]byte, n), nil
	}
	return rr.alloc.Alloc(n)
}

// readBulkHeader reads "$N\r\n" and returns N.
func (rr *RequestReader) readBulkHeader() (int, error) {
	c, err := rr.br.ReadByte()
	if err != nil {
		return 0, unexpected(err)
	}
	if c != '$' {
		return 0, ErrMalformed
	}
	n, err := rr.readLength()
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, ErrMalformed
	}
	if n > MaxPayload {
		return 0, ErrPayloadTooBig
	}
	return int(n), nil
}

// readLength reads a signed decimal terminated by CRLF.
func (rr *RequestReader) readLength() (int64, error) {
	return readLength(rr.br)
}

func (rr *RequestReader) expectCRLF() error {
	a, err := rr.br.ReadByte()
	if err != nil {
		return unexpected(err)
	}
	b, err := rr.br.ReadByte()
	if err != nil {
		return unexpected(err)
	}
	if a != '\r' || b != '\n' {
		return ErrMalformed
	}
	return nil
}

func readLength(br *bufio.Reader) (int64, error) {
	var n int64
	neg := false
	digits := 0
	for i := 0; ; i++ {
		if i > maxHeaderBytes {
			return 0, ErrMalformed
		}
		c, err := br.ReadByte()
		if err != nil {
			return 0, unexpected(err)
		}
		switch {
		case c == '-' && i == 0:
			neg = true
		case c >= '0' && c <= '9':
			if n > (1<<62)/10 {
				return 0, ErrMalformed
			}
			n = n*10 + int64(c-'0')
			digits++
		case c == '\r':
			c2, err := br.ReadByte()
			if err != nil {
				return 0, unexpected(err)
			}
			if c2 != '\n' || digits == 0 {
				return 0, ErrMalformed
			}
			if neg {
				n = -n
			}
			return n, nil
		default:
			return 0, ErrMalformed
		}
	}
}

// grow extends b by n bytes, reallocating at most once.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, 2*cap(b)+n)
	copy(nb, b)
	return nb
}

// unexpected turns an EOF inside a request into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Kind is the type of a reply.
type Kind byte

// Reply kinds, named by their RESP prefix.
const (
	KindSimple  Kind = '+'
	KindError   Kind = '-'
	KindInteger Kind = ':'
	KindBulk    Kind = '$'
	KindArray   Kind = '*'
)

// Value is one reply. A nil bulk or nil array has Nil set.
type Value struct {
	Kind  Kind
	Str   []byte // simple string, error text or bulk payload
	Int   int64
	Array []Value
	Nil   bool
}

// String renders a value for messages and tests.
func (v Value) String() string {
	switch v.Kind {
	case KindSimple:
		return "+" + string(v.Str)
	case KindError:
		return "-" + string(v.Str)
	case KindInteger:
		return ":" + strconv.FormatInt(v.Int, 10)
	case KindBulk:
		if v.Nil {
			return "$-1"
		}
		return strconv.Quote(string(v.Str))
	case KindArray:
		if v.Nil {
			return "*-1"
		}
		s := "["
		for i, e := range v.Array {
			if i > 0 {
				s += ", "
			}
			s += e.String()
		}
		return s + "]"
	}
	return fmt.Sprintf("<kind %q>", byte(v.Kind))
}

// ReplyReader reads server replies. Unlike requests, replies have no size
// limit beyond MaxReply.
type ReplyReader struct {
	br *bufio.Reader
}

// MaxReply bounds a single bulk reply, so a hostile server cannot make a
// client allocate without limit.
const MaxReply = 64 << 20

// maxDepth bounds nested arrays in a reply.
const maxDepth = 16

// NewReplyReader reads replies from r through a buffer of size bytes.
func NewReplyReader(r io.Reader, size int) *ReplyReader {
	return &ReplyReader{br: bufio.NewReaderSize(r, size)}
}

// ReadReply reads one reply. Payloads are freshly allocated and owned by the
// caller. An error reply is returned as a Value of KindError, not as error.
func (r *ReplyReader) ReadReply() (Value, error) {
	return r.read(0)
}

func (r *ReplyReader) read(depth int) (Value, error) {
	if depth > maxDepth {
		return Value{}, fmt.Errorf("resp: reply nested deeper than %d", maxDepth)
	}
	c, err := r.br.ReadByte()
	if err != nil {
		return Value{}, err
	}
	switch Kind(c) {
	case KindSimple, KindError:
		line, err := r.readLine()
		if err != nil {
			return Value{}, err
		}
		return Value{Kind: Kind(c), Str: line}, nil
	case KindInteger:
		n, err := readLength(r.br)
		if err != nil {
			return Value{}, fmt.Errorf("resp: bad integer reply: %w", err)
		}
		return Value{Kind: KindInteger, Int: n}, nil
	case KindBulk:
		n, err := readLength(r.br)
		if err != nil {
			return Value{}, fmt.Errorf("resp: bad bulk length: %w", err)
		}
		if n < 0 {
			return Value{Kind: KindBulk, Nil: true}, nil
		}
		if n > MaxReply {
			return Value{}, fmt.Errorf("resp: bulk reply of %d bytes exceeds %d", n, MaxReply)
		}
		// Exactly n bytes: a 64 KiB value stays in a 64 KiB allocation
		// (callers such as zdbfs keep values as they come).
		buf := make([]byte, n)
		if _, err := io.ReadFull(r.br, buf); err != nil {
			return Value{}, unexpected(err)
		}
		var crlf [2]byte
		if _, err := io.ReadFull(r.br, crlf[:]); err != nil {
			return Value{}, unexpected(err)
		}
		if crlf != [2]byte{'\r', '\n'} {
			return Value{}, errors.New("resp: bulk reply not terminated by CRLF")
		}
		return Value{Kind: KindBulk, Str: buf}, nil
	case KindArray:
		n, err := readLength(r.br)
		if err != nil {
			return Value{}, fmt.Errorf("resp: bad array length: %w", err)
		}
		if n < 0 {
			return Value{Kind: KindArray, Nil: true}, nil
		}
		if n > 1<<20 {
			return Value{}, fmt.Errorf("resp: array reply of %d elements is too long", n)
		}
		arr := make([]Value, n)
		for i := range arr {
			if arr[i], err = r.read(depth + 1); err != nil {
				return Value{}, unexpected(err)
			}
		}
		return Value{Kind: KindArray, Array: arr}, nil
	}
	return Value{}, fmt.Errorf("resp: unknown reply type %q", c)
}

func (r *ReplyReader) readLine() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("resp: status line too long")
		}
		return nil, unexpected(err)
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, errors.New("resp: line not terminated by CRLF")
	}
	out := make([]byte, len(line)-2)
	copy(out, line)
	return out, nil
}
