"""Shared plumbing: configs, run folders, devices, DDP, atomic writes, memory, statistics, errors."""
