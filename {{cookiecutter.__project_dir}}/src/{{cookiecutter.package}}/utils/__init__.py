"""Shared plumbing: errors, whole-file writes, torch files, hardware defaults, signals."""
