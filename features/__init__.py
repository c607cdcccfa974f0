"""The feature stage: YouTube-8M shards converted to numpy memmap stores that training reads."""
