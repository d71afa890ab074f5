"""Seeing where time and memory go: tracing.py (hg.trace / hg.phase / hg.layer, op-by-op
records), tuning.py (impl="auto" choices and their cache across processes) and compare.py (one
training step against one inference pass: time, peak memory, bytes kept; loads the engine),
machine_load.py (how busy the machine was while figures were taken; contention warnings)."""
