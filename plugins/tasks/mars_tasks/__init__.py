"""MARS tasks: a plugin of MARS (see README.md)."""

__version__ = "0.1.0"
