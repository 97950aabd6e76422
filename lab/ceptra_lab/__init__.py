"""CEPtra lab: a runnable emulator of a CEPtra cluster's HTTP contract (not part of the collection)."""

__version__ = "0.1.0"
