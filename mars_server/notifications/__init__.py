"""The builtin ``notifications`` plugin: in-app notifications and per-user preferences."""
