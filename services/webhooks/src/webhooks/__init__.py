"""Scribe webhooks: signed HTTP deliveries of job events (Standard Webhooks)."""
