"""The package version (a module of its own so any layer can read it without the facade)."""

__version__ = "0.1.0"
