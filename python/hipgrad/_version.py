"""The package version (one place: hipgrad.__version__, checkpoints and run summaries read it)."""

__version__ = "0.1.0"
