"""Stage 1 inputs: feature stores, annotations, synthetic and spliced benchmarks, prediction files."""
