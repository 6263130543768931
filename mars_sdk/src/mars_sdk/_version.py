"""The version of mars-platform-sdk (imported as mars_sdk)."""

__version__ = "0.1.0"
