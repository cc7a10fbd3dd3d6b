"""Errors a caller can act on. Each carries an HTTP status and a stable machine-readable code,
so the endpoint answers 4xx with a JSON body and the metrics count it by code."""

from __future__ import annotations


class ClipwatchError(Exception):
    """A request or input problem: never a crash, always a clear message."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class InvalidRequest(ClipwatchError):
    code = "invalid_request"


class UnsupportedMediaType(ClipwatchError):
    status = 415
    code = "unsupported_media_type"


class InvalidUri(ClipwatchError):
    code = "invalid_uri"


class NotAllowed(ClipwatchError):
    status = 403
    code = "not_allowed"


class SegmentNotFound(ClipwatchError):
    status = 404
    code = "segment_not_found"


class SegmentTooLarge(ClipwatchError):
    status = 413
    code = "segment_too_large"


class UndecodableVideo(ClipwatchError):
    """Corrupt, truncated, audio-only or zero-frame media."""

    status = 422
    code = "undecodable_video"


class VideoTooShort(ClipwatchError):
    status = 422
    code = "video_too_short"


class ModelUnavailable(Exception):
    """The model cannot be loaded (bad directory, weights that cannot be downloaded)."""


class Overloaded(ClipwatchError):
    """More invocations in flight than the endpoint queues: come back after ``retry_after_s``."""

    status = 429
    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s
