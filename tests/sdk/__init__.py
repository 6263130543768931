"""Helpers of the SDK tests (``tests/test_sdk_*.py``)."""

#: The password of the users the SDK tests make.
PASSWORD = "correct horse battery staple"
