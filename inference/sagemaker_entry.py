"""Entry script for AWS's prebuilt MXNet inference container (as in the seed): package this
repository's ``clipwatch`` and ``inference`` folders under ``code/`` in ``model.tar.gz`` with
``inference/sagemaker_entry.py`` as the entry point. The four handler functions are thin
adapters over the same Endpoint that ``clipwatch serve`` runs.
"""

from __future__ import annotations

from clipwatch.config import Settings
from clipwatch.errors import ClipwatchError, UnsupportedMediaType
from clipwatch.records import InvocationRequest, Prediction

from .model import load_classifier
from .predictor import Endpoint

JSON = "application/json"


def model_fn(model_dir: str) -> Endpoint:
    """Load the model directory SageMaker unpacked and wire the store from the environment."""
    classifier = load_classifier(model_dir)
    classifier.warm_up()
    return Endpoint.from_settings(classifier, Settings.from_env())


def input_fn(body, content_type: str = JSON) -> InvocationRequest:
    """Parse the JSON request naming a segment."""
    if content_type and "json" not in content_type and content_type != "application/octet-stream":
        raise UnsupportedMediaType(f"content type {content_type!r}: send JSON naming the segment")
    return InvocationRequest.parse(body)


def predict_fn(request: InvocationRequest, endpoint: Endpoint) -> Prediction:
    """Run the whole pipeline: fetch, decode, preprocess, model, store."""
    return endpoint.invoke(request)


def output_fn(prediction: Prediction, accept: str = JSON) -> tuple[str, str]:
    """Serialize the Prediction as JSON."""
    return prediction.model_dump_json(), JSON


def transform_fn(endpoint: Endpoint, data, input_content_type: str, output_content_type: str):
    """The container calls this one function when it exists; errors keep their 4xx status."""
    try:
        return output_fn(predict_fn(input_fn(data, input_content_type), endpoint), output_content_type)
    except ClipwatchError as exc:
        raise _toolkit_error(exc) from exc


def _toolkit_error(exc: ClipwatchError) -> Exception:
    try:  # present inside AWS's inference containers only
        from sagemaker_inference.errors import GenericInferenceToolkitError
    except ImportError:
        return exc
    return GenericInferenceToolkitError(exc.status, exc.message)
