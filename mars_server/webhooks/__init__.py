"""The builtin ``webhooks`` plugin: signed deliveries of events to subscribers' endpoints."""
