"""Speed and memory benchmarks of dnrt: ``python -m benchmarks.run [--quick]`` writes
``benchmarks/results/latest.{json,md}`` (DESIGN §2: benchmarks write JSON, never timed unit tests)."""
