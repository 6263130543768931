"""MARS single sign-on: people sign in with the organisation's identity provider."""

__version__ = "0.1.0"
