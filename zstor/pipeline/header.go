package pipeline

// ParseShardHeader decodes and sanity-checks a shard's header without
// authenticating it (InspectShard also verifies the checksum). zstor uses
// it before freeing a shard, to check that the value at a recorded location
// still claims to be that shard: a backend wiped and restarted at the same
// address reuses ids.
func ParseShardHeader(shard []byte) (ShardHeader, error) { return parseHeader(shard) }
