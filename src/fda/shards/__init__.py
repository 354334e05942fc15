"""The shard format (schema, manifest, writer, reader): a versioned contract between the stages."""
