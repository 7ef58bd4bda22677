"""Measurement scripts (see README.md); run as files from the repository root."""
