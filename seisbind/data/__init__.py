"""Paired data: physics-based generation (scenarios), storage and loading."""
