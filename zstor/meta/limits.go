package meta

import (
	"errors"
	"fmt"
)

// Limits of a Store, as documented on the interface.
const (
	// MaxKeyLen is the longest key a Store accepts, in bytes.
	MaxKeyLen = 200
	// MaxValueLen is the largest value a Store accepts, in bytes.
	MaxValueLen = 4 << 20
)

// ErrInvalidArgument is wrapped by the errors for an empty or over-long key
// and an over-large value: a caller's mistake, not a backend's.
var ErrInvalidArgument = errors.New("meta: invalid argument")

// checkKey rejects the empty key (a keyed hash is never empty, so an empty
// key is a caller's bug) and keys longer than MaxKeyLen.
func checkKey(op, key string) error {
	switch {
	case key == "":
		return fmt.Errorf("meta %s: %w: empty key", op, ErrInvalidArgument)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("meta %s: %w: key of %d bytes, the limit is %d", op, ErrInvalidArgument, len(key), MaxKeyLen)
	}
	return nil
}

// checkValue rejects values larger than MaxValueLen.
func checkValue(op string, value []byte) error {
	if len(value) > MaxValueLen {
		return fmt.Errorf("meta %s: %w: value of %d bytes, the limit is %d", op, ErrInvalidArgument, len(value), MaxValueLen)
	}
	return nil
}
