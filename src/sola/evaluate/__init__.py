"""Stage 3: linear probe, checkpoint selection, TSM, detection and proposal metrics."""
