"""``/api/jobs/{id}``: the status of a background job, for its owner."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from chorus_api.deps import ArqDep, CurrentUserId
from chorus_api.domain.errors import NotFoundError
from chorus_api.domain.jobs import job_status
from chorus_api.routes.openapi import error_responses
from chorus_api.schemas.jobs import JobOut

__all__ = ["router"]

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


@router.get("/{job_id}", responses=error_responses(401, 404, 422, 503))
async def read_job(
    job_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9:_.\-]{1,128}$")],
    user_id: CurrentUserId,
    arq: ArqDep,
) -> JobOut:
    """Where a job enqueued on your behalf stands (e.g. ``welcome:<your id>``).

    A job that is not yours is 404, exactly like one that never existed.
    """
    try:
        view = await job_status(arq, job_id=job_id, user_id=user_id)
    except NotFoundError:
        raise HTTPException(404, {"code": "not_found", "message": "No such job."}) from None
    return JobOut(id=view.id, function=view.function, status=view.status, result=view.result)
