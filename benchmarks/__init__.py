"""Speed and memory benchmarks of dnrt: ``python -m benchmarks.run [--quick]`` writes
``benchmarks/results/latest.{json,md}`` (benchmarks write JSON; they are never timed unit tests)."""
