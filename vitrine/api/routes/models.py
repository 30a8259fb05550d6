"""The fashion model over HTTP: zero-shot labels of a photo, a collection's model versions, training
and reindexing as jobs, and recorded clicks (training pairs)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Request, UploadFile
from pydantic import BaseModel, Field

from vitrine.api.auth import Read, Write
from vitrine.api.deps import EngineDep
from vitrine.api.forms import read_upload
from vitrine.api.routes.jobs import JobOut
from vitrine.api.schemas import Strict
from vitrine.errors import ImageError, InvalidInput
from vitrine.jobs.runner import JobRunner
from vitrine.models.training import TrainConfig

router = APIRouter(tags=["fashion model"])


class LabelOut(BaseModel):
    value: str
    confidence: float


class LabelsOut(BaseModel):
    labels: dict[str, list[LabelOut]] = Field(description="category, colour and pattern: top values, best first")
    model: str


class TrainRequest(Strict):
    seed: int = Field(0, ge=0, le=2**31 - 1)
    epochs: int = Field(TrainConfig.epochs, ge=1, le=200)


class ReindexRequest(Strict):
    encoder: str = Field("builtin", max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$",
                         description="builtin (the default built-in model), a built-in model's name "
                                     "(efficientnet-lite0-fashion, efficientnet-lite0), or the name of a checkpoint "
                                     "`vitrine models pull` brought in (a folder on the server's disk is named by "
                                     "the CLI only)")


class ModelVersionOut(BaseModel):
    version: str
    active: bool
    heldout: dict[str, float] | None = None
    created_at: float | None = None
    started_from: str | None = None
    image_model: str | None = Field(None, description="base on a built-in model: the image model its heads read")


class UseModel(Strict):
    version: str = Field(..., max_length=20, description="base or v<N>")


class Click(Strict):
    product_id: str = Field(..., min_length=1, max_length=256)
    query: str = Field(..., min_length=1, max_length=1000, description="the words that led to this product")


@router.post("/labels", dependencies=[Read], response_model=LabelsOut,
             summary="Zero-shot category, colour and pattern of an uploaded photo")
def labels(
    engine: EngineDep,
    image: Annotated[UploadFile, File(description="The photo")],
    collection: Annotated[str | None, Query(
        max_length=64, description="use its model and its own values, weighed by how many of its products hold them",
    )] = None,
) -> LabelsOut:
    data = read_upload(image, engine.settings.max_download_bytes)
    if collection:
        engine.store(collection)
    try:
        found = engine.label_image(data, collection)
    except ImageError as exc:
        raise ImageError(exc.message, field="image") from exc
    model = engine.active_model(collection) if collection else "base"
    return LabelsOut(model=model, labels={
        kind: [LabelOut(value=x.value, confidence=x.confidence) for x in values] for kind, values in found.items()
    })


@router.post("/collections/{name}/train", dependencies=[Write], status_code=202, response_model=JobOut,
             summary="Fine-tune the fashion model on this collection (a job); the result becomes its active version")
def train(name: str, request: Request, engine: EngineDep, body: TrainRequest | None = None) -> dict[str, Any]:
    engine.store(name)
    body = body or TrainRequest()
    runner: JobRunner = request.app.state.jobs
    return runner.submit_train(name, seed=body.seed, epochs=body.epochs).as_dict()


@router.post("/collections/{name}/reindex", dependencies=[Write], status_code=202, response_model=JobOut,
             summary="Encode the collection's photos with another encoder (a job, resumable); it then searches with it")
def reindex(name: str, request: Request, engine: EngineDep, body: ReindexRequest | None = None) -> dict[str, Any]:
    engine.store(name)
    body = body or ReindexRequest()
    engine.resolve_encoder(body.encoder)  # an unknown checkpoint is a 422 now, not a failed job later
    runner: JobRunner = request.app.state.jobs
    return runner.submit_reindex(name, encoder=body.encoder).as_dict()


@router.get("/collections/{name}/models", dependencies=[Read], response_model=list[ModelVersionOut],
            summary="The collection's model versions; one is active")
def versions(name: str, engine: EngineDep) -> list[ModelVersionOut]:
    active = engine.active_model(name)
    out = []
    for card in engine.model_versions(name).cards():
        held = card.get("heldout")
        out.append(ModelVersionOut(version=card["version"], active=card["version"] == active,
                                   heldout={k: float(v) for k, v in held.items()} if held else None,
                                   created_at=card.get("created_at"), started_from=card.get("started_from"),
                                   image_model=card.get("image_model")))
    return out


@router.put("/collections/{name}/models/active", dependencies=[Write], response_model=ModelVersionOut,
            summary="Switch the model version the collection searches with")
def use_model(name: str, body: UseModel, engine: EngineDep) -> ModelVersionOut:
    engine.store(name)
    return ModelVersionOut(version=engine.use_model(name, body.version), active=True)


@router.post("/collections/{name}/clicks", dependencies=[Write], status_code=204,
             summary="Record that a query led to a product: a training pair for the next `train`")
def click(name: str, body: Click, engine: EngineDep) -> None:
    engine.get_product(name, body.product_id)
    if not body.query.strip():
        raise InvalidInput("query is empty", field="query")
    engine.store(name).add_training_pair(body.product_id, body.query.strip(), "click")
