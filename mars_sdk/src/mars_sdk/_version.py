"""The version of mars-sdk."""

__version__ = "0.1.0"
