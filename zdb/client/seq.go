package client

import (
	"context"
	"encoding/binary"
	"fmt"
)

// IDLen is the length of a key in a sequential (seq mode) namespace.
const IDLen = 8

// EncodeID returns the key of sequential id: 8 bytes, little-endian.
func EncodeID(id uint64) []byte {
	return binary.LittleEndian.AppendUint64(make([]byte, 0, IDLen), id)
}

// DecodeID returns the id a sequential key holds. A key that is not 8 bytes
// long is an error.
func DecodeID(key []byte) (uint64, error) {
	if len(key) != IDLen {
		return 0, fmt.Errorf("zdb: sequential id of %d bytes, want %d", len(key), IDLen)
	}
	return binary.LittleEndian.Uint64(key), nil
}

// SetSeq appends value to a sequential namespace and returns the id the
// server assigned to it.
func (c *Client) SetSeq(ctx context.Context, value []byte) (uint64, error) {
	id, _, err := c.Set(ctx, []byte{}, value)
	if err != nil {
		return 0, err
	}
	n, err := DecodeID(id)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnexpectedReply, err)
	}
	return n, nil
}

// UpdateSeq replaces the value of an existing id in a sequential namespace;
// changed is false when the value was already stored. An id the server has
// not assigned gives ErrOnlyUpdate.
func (c *Client) UpdateSeq(ctx context.Context, id uint64, value []byte) (changed bool, err error) {
	_, changed, err = c.Set(ctx, EncodeID(id), value)
	return changed, err
}

// GetSeq returns the value of id in a sequential namespace, or ErrNotFound.
func (c *Client) GetSeq(ctx context.Context, id uint64) ([]byte, error) {
	return c.Get(ctx, EncodeID(id))
}
