"""Speed and memory measurements; each script writes its section of benchmarks/RESULTS.md."""
