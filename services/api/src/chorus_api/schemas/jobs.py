"""Background job status."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["JobOut"]


class JobOut(BaseModel):
    """Where a job stands; ``result`` is set once it is ``complete``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "welcome:42",
                    "function": "send_welcome_email",
                    "status": "complete",
                    "result": None,
                }
            ]
        }
    )

    id: str
    function: str | None = Field(description="Null when the job's data has expired.")
    status: Literal["queued", "in_progress", "complete", "failed", "not_found"]
    result: Any | None = None
