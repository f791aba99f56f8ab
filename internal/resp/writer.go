package resp

import (
	"bufio"
	"io"
	"strconv"
)

// Writer buffers RESP output. Errors stick in the underlying bufio.Writer and
// surface from Flush.
type Writer struct {
	bw  *bufio.Writer
	num [24]byte
}

// NewWriter writes to w through a buffer of size bytes.
func NewWriter(w io.Writer, size int) *Writer {
	return &Writer{bw: bufio.NewWriterSize(w, size)}
}

// Flush sends everything buffered.
func (w *Writer) Flush() error { return w.bw.Flush() }

// Buffered is the number of bytes waiting for Flush.
func (w *Writer) Buffered() int { return w.bw.Buffered() }

// Simple writes "+s\r\n".
func (w *Writer) Simple(s string) {
	w.bw.WriteByte('+')
	w.bw.WriteString(s)
	w.bw.WriteString("\r\n")
}

// Error writes "-s\r\n". 0-db errors carry no "ERR " prefix.
func (w *Writer) Error(s string) {
	w.bw.WriteByte('-')
	w.bw.WriteString(s)
	w.bw.WriteString("\r\n")
}

// Int writes ":n\r\n".
func (w *Writer) Int(n int64) {
	w.bw.WriteByte(':')
	w.bw.Write(strconv.AppendInt(w.num[:0], n, 10))
	w.bw.WriteString("\r\n")
}

// Bulk writes "$len\r\n<b>\r\n".
func (w *Writer) Bulk(b []byte) {
	w.header('$', len(b))
	w.bw.Write(b)
	w.bw.WriteString("\r\n")
}

// BulkHeader writes "$n\r\n", the start of a bulk string whose n bytes
// and closing CRLF the caller sends itself (see CRLF).
func (w *Writer) BulkHeader(n int) { w.header('$', n) }

// CRLF writes "\r\n".
func (w *Writer) CRLF() { w.bw.WriteString("\r\n") }

// BulkString writes s as a bulk string.
func (w *Writer) BulkString(s string) {
	w.header('$', len(s))
	w.bw.WriteString(s)
	w.bw.WriteString("\r\n")
}

// Nil writes the nil bulk string "$-1\r\n".
func (w *Writer) Nil() { w.bw.WriteString("$-1\r\n") }

// Array writes the header of an array of n elements; the caller writes them.
func (w *Writer) Array(n int) { w.header('*', n) }

// Command writes a request: an array of bulk strings.
func (w *Writer) Command(args ...[]byte) {
	w.Array(len(args))
	for _, a := range args {
		w.Bulk(a)
	}
}

func (w *Writer) header(prefix byte, n int) {
	w.bw.WriteByte(prefix)
	w.bw.Write(strconv.AppendInt(w.num[:0], int64(n), 10))
	w.bw.WriteString("\r\n")
}
