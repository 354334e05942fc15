"""The shard format (schema, writer, reader): a versioned contract between the stages."""
