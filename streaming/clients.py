"""The endpoint, three ways, one contract: ``invoke(InvocationRequest) -> Prediction``, raising
``InvokeFailed`` that says whether trying again can help; ``close(finish)`` when done (``finish``:
complete the background work in hand, or, after a stop signal, only what is running).

- ``InProcessClient``: an ``inference.predictor.Endpoint`` in this process (the embedded default);
- ``HttpClient``: our endpoint server (``POST /invocations``);
- ``SageMakerClient``: a SageMaker endpoint by name through boto3's ``sagemaker-runtime``.
"""

from __future__ import annotations

import json

from clipwatch.records import InvocationRequest, Prediction

# 404: the segment may not be visible yet (S3 after an event); 408/429: busy; 5xx: the server.
RETRYABLE_STATUS = {404, 408, 429}


class InvokeFailed(Exception):
    def __init__(self, code: str, message: str, retryable: bool, status: int | None = None,
                 retry_after_s: float | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.retryable, self.status = code, message, retryable, status
        self.retry_after_s = retry_after_s

    @property
    def overloaded(self) -> bool:
        """The endpoint is busy, not failing: wait and try again, as long as it takes."""
        return self.status == 429 or self.code in ("overloaded", "ThrottlingException")

    @property
    def endpoint_down(self) -> bool:
        """Nothing answered for the endpoint (refused, timed out, a proxy's 502/503/504): not this
        segment's fault, so it waits for the endpoint instead of spending its attempts."""
        return self.code in ("unreachable", "ServiceUnavailable", "ModelNotReadyException") \
            or self.status in (502, 503, 504)


def retry_after(headers) -> float | None:
    """Retry-After in seconds (the delta form; an HTTP date is rare enough to ignore). httpx's
    headers match names in any case; botocore's are lower-cased."""
    value = (headers or {}).get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _failed(status: int, body: bytes | str, headers=None) -> InvokeFailed:
    """From a container error body ``{"error": {"code", "message"}}`` (or anything else)."""
    try:
        error = json.loads(body)["error"]
        code, message = error["code"], error["message"]
    except (ValueError, KeyError, TypeError):
        code, message = f"http_{status}", (body.decode(errors="replace") if isinstance(body, bytes) else body)[:300]
    return InvokeFailed(code, message, status >= 500 or status in RETRYABLE_STATUS, status, retry_after(headers))


class InProcessClient:
    def __init__(self, endpoint):
        self.endpoint = endpoint

    def invoke(self, request: InvocationRequest) -> Prediction:
        from clipwatch.errors import ClipwatchError

        try:
            return self.endpoint.invoke(request)
        except ClipwatchError as exc:
            raise InvokeFailed(exc.code, exc.message, exc.status in RETRYABLE_STATUS, exc.status) from None
        except Exception as exc:  # a bug or a resource problem: maybe not this segment's fault
            raise InvokeFailed("internal_error", f"{exc.__class__.__name__}: {exc}", True, 500) from exc

    def close(self, finish: bool = True) -> None:
        """The endpoint's background work is the proposed segments of flagged segments."""
        self.endpoint.close(finish_proposals=finish)


class HttpClient:
    def __init__(self, url: str, timeout_s: float = 120.0):
        import httpx

        self.url = url.rstrip("/") + "/invocations"
        self._http = httpx.Client(timeout=timeout_s)

    def invoke(self, request: InvocationRequest) -> Prediction:
        import httpx

        try:
            response = self._http.post(self.url, content=request.model_dump_json(exclude_none=True),
                                       headers={"content-type": "application/json"})
        except httpx.HTTPError as exc:
            raise InvokeFailed("unreachable", f"{self.url}: {exc.__class__.__name__}: {exc}", True) from None
        if response.status_code != 200:
            raise _failed(response.status_code, response.content, response.headers)
        return Prediction.model_validate_json(response.content)

    def close(self, finish: bool = True) -> None:
        self._http.close()


class SageMakerClient:
    RETRYABLE_CODES = {"ThrottlingException", "ModelNotReadyException", "ServiceUnavailable",
                       "InternalFailure", "InternalServerError", "TooManyRequestsException"}

    def __init__(self, endpoint_name: str, endpoint_url: str | None = None):
        import boto3
        from botocore.config import Config

        self.endpoint_name = endpoint_name
        self._runtime = boto3.client("sagemaker-runtime", endpoint_url=endpoint_url, config=Config(
            retries={"max_attempts": 1}, read_timeout=120, connect_timeout=5))

    def invoke(self, request: InvocationRequest) -> Prediction:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._runtime.invoke_endpoint(
                EndpointName=self.endpoint_name, ContentType="application/json",
                Accept="application/json", Body=request.model_dump_json(exclude_none=True))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if "OriginalStatusCode" in exc.response:  # a ModelError: the container's own answer
                raise _failed(int(exc.response["OriginalStatusCode"]),
                              exc.response.get("OriginalMessage", "")) from None
            code = error.get("Code", "ClientError")
            meta = exc.response.get("ResponseMetadata", {})
            raise InvokeFailed(code, error.get("Message", str(exc)), code in self.RETRYABLE_CODES,
                               meta.get("HTTPStatusCode"), retry_after(meta.get("HTTPHeaders"))) from None
        except BotoCoreError as exc:
            raise InvokeFailed("unreachable", str(exc), True) from None
        return Prediction.model_validate_json(response["Body"].read())

    def close(self, finish: bool = True) -> None:
        self._runtime.close()


def client_for(*, model: str | None = None, endpoint_url: str | None = None,
               sagemaker_endpoint: str | None = None, settings=None):
    """The client a worker's flags ask for (exactly one of the three)."""
    if sum(x is not None for x in (model, sagemaker_endpoint)) + (endpoint_url is not None and
                                                                   sagemaker_endpoint is None) != 1:
        raise ValueError("give exactly one of --model, --endpoint-url or --sagemaker-endpoint")
    if sagemaker_endpoint:
        return SageMakerClient(sagemaker_endpoint, endpoint_url)
    if endpoint_url:
        return HttpClient(endpoint_url)
    import inference  # noqa: F401  -- sets MXNet's thread count before MXNet loads
    from clipwatch.config import Settings
    from inference.deployment import current
    from inference.model import load_classifier
    from inference.predictor import Endpoint

    classifier = load_classifier(model)
    classifier.warm_up()
    endpoint = Endpoint.from_settings(classifier, settings or Settings.from_env())
    if current(model) is not None:  # a deployment: serve its promotions without a restart
        endpoint.follow(model, load_classifier)
    return InProcessClient(endpoint)
