"""Node tags: the names a manifest's target_tags must match, carried by Ray as resources."""

from __future__ import annotations

import re

_TAG_RE = re.compile(r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?")
_RAY_RESERVED = frozenset({"CPU", "GPU", "memory", "object_store_memory", "bundle"})
TAG_HINT = (
    "must be 1-63 lowercase letters, digits, '.', '_' or '-', starting and ending with a "
    "letter or digit"
)


def validate_tag(tag: str) -> str:
    """Return `tag` if Ray can carry it as a resource name, else raise ValueError naming it."""
    if not isinstance(tag, str):
        raise ValueError(f"tag {tag!r} must be a string")
    if not _TAG_RE.fullmatch(tag):
        raise ValueError(f"tag {tag!r} {TAG_HINT}")
    if "_group_" in tag:
        # Ray accepts such a resource at start, but anything asking for it stays pending forever.
        raise ValueError(f"tag {tag!r} must not contain '_group_' (Ray reserves it)")
    if tag in _RAY_RESERVED:
        raise ValueError(f"tag {tag!r} is a reserved Ray resource name")
    return tag
