"""Shared helpers and fixtures of the lab tests (test modules import them, never each other)."""
