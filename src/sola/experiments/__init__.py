"""Whole experiments: baseline vs SoLa comparison, ablations, cost, detection runs, the demo."""
