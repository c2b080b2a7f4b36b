"""What every body of the contract shares: how it reads and how it prints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, WithJsonSchema

# Times travel as ISO 8601 with "+00:00" (datetime.isoformat), as the API always wrote them:
# pydantic's own JSON form ("Z") would change every printed body.
Timestamp = Annotated[
    datetime,
    PlainSerializer(datetime.isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class Body(BaseModel):
    """A reply body. Fields a newer server adds are kept (and printed), not dropped."""

    model_config = ConfigDict(extra="allow")

    def to_json(self) -> dict[str, Any]:
        """The body as the API sent it: JSON types, only the fields the reply carried."""
        return self.model_dump(mode="json", exclude_unset=True)
