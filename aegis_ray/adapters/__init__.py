"""Adapters: the edge of the code where aegis meets Ray, Docker, PostgreSQL and Temporal.

Each sub-package wraps one outside system and may import the pure core, never the API, the
workflows or the CLI.
"""
