"""The entry script AWS's prebuilt MXNet inference container loads (model_fn / transform_fn)."""

import json

import pytest

from clipwatch.errors import InvalidRequest, UnsupportedMediaType
from inference import sagemaker_entry


@pytest.fixture
def endpoint(tiny_model_dir, media, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPWATCH_STORE", f"sqlite:///{tmp_path}/preds.db")
    monkeypatch.setenv("CLIPWATCH_ALLOWED_DIRS", str(media["dir"]))
    return sagemaker_entry.model_fn(str(tiny_model_dir))


def test_transform_fn_runs_the_same_pipeline_and_stores(endpoint, media):
    body, content_type = sagemaker_entry.transform_fn(
        endpoint, json.dumps({"uri": str(media["segment"])}), "application/json", "application/json")
    p = json.loads(body)
    assert content_type == "application/json"
    assert p["model_version"] == "tiny-1" and p["sequence"] == 1 and p["stored"] is True
    assert endpoint.store.get_prediction(p["stream_id"], 1).label == p["label"]


def test_bad_requests_keep_their_meaning(endpoint):
    with pytest.raises(InvalidRequest, match="exactly one of"):
        sagemaker_entry.transform_fn(endpoint, b"{}", "application/json", "application/json")
    with pytest.raises(UnsupportedMediaType):
        sagemaker_entry.transform_fn(endpoint, b"\x47", "video/mp2t", "application/json")
