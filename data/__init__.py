"""The data stage: read, download and generate YouTube-8M TFRecord shards."""
