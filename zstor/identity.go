package zstor

import "qss/zstor/backend"

// canonID is the identity placement compares to keep two shards of a chunk
// off one backend.
func (c *Client) canonID(b *backend.Backend) string { return b.ID() }
