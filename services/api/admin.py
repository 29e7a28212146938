"""Administrator routes: rebuild the read models by replay, export evidence, verify the chains."""

import asyncio
from typing import Final

import msgspec
from litestar import Response, get, post
from litestar.exceptions import ClientException
from litestar.params import FromPath, FromQuery, JSONBody

from services import evidence
from services.api.guards import actor_of, requires
from services.api.state import AnyRequest, models_of, reader_of, store_of
from services.auth import Permission
from services.readmodels import ReplayStatus

_ADMIN: Final = [requires(Permission.ADMINISTER)]


class ReplayBody(msgspec.Struct, forbid_unknown_fields=True):
    verify: bool = False


@post("/v1/admin/replay", status_code=202, guards=_ADMIN, tags=["admin"])
async def start_replay(
    request: AnyRequest, data: JSONBody[ReplayBody | None] = None
) -> ReplayStatus:
    """Rebuild every read model from the log and swap it in; poll GET for progress."""
    models = models_of(request)
    if not models.start_replay(data.verify if data else False):
        raise ClientException("a replay is already running", status_code=409)
    await asyncio.sleep(0)  # let it start, so the answer says "building"
    return models.status


@get("/v1/admin/replay", guards=_ADMIN, tags=["admin"])
async def replay_status(request: AnyRequest) -> ReplayStatus:
    return models_of(request).status


@get(
    "/v1/incidents/{incident_id:str}/export",
    guards=_ADMIN,
    tags=["evidence"],
    media_type="application/gzip",
)
async def export_bundle(request: AnyRequest, incident_id: FromPath[str]) -> Response[bytes]:
    """The incident's evidence bundle: a tar.gz of one directory `evidence-<id>/` holding
    events.jsonl (as stored), sequences.txt, manifest.json, verify.py and README.txt."""
    return await bundle_download(request, incident_id, actor_of(request))


async def bundle_download(request: AnyRequest, incident_id: str, asked_by: str) -> Response[bytes]:
    """The bundle as a download (the API's route and the console's button)."""
    bundle = await evidence.packed_bundle(evidence.Log.of(store_of(request)), incident_id, asked_by)
    disposition = f'attachment; filename="{bundle.name}.tar.gz"'
    headers = {"Content-Disposition": disposition, "X-Manifest-SHA256": bundle.manifest_sha256}
    return Response(bundle.data, media_type="application/gzip", headers=headers)


@get("/v1/verify", guards=_ADMIN, tags=["evidence"])
async def verify_chains(request: AnyRequest, strict: FromQuery[bool] = False) -> evidence.Report:
    """Recompute every incident's hash chain from the log: first break per incident, gaps.

    `strict`: a chain cut by expiry that no retention.advanced record vouches for fails too."""
    # The projector's checkpoint was written: a log ending before it has lost its tail.
    checkpoint = reader_of(request).projector.checkpoint
    return await evidence.verify_log(evidence.Log.of(store_of(request)), checkpoint, strict)


ROUTES: Final = [start_replay, replay_status, export_bundle, verify_chains]
