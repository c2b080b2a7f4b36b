"""Temporal: the embedded dev server `aegis up` starts."""
