"""Review-tool errors: each a 4xx with a stable code (the app answers ``{"error": {code, message}}``
and counts it by code), like the endpoint's."""

from clipwatch.errors import ClipwatchError


class InvalidAnnotation(ClipwatchError):
    status = 422
    code = "invalid_annotation"


class Unauthorized(ClipwatchError):
    status = 401
    code = "unauthorized"


class Forbidden(ClipwatchError):
    status = 403
    code = "forbidden"


class TaskNotFound(ClipwatchError):
    status = 404
    code = "task_not_found"


class LeaseConflict(ClipwatchError):
    """The task is leased to someone else, the lease expired, or the task moved on."""

    status = 409
    code = "lease_conflict"


class WrongState(ClipwatchError):
    status = 409
    code = "wrong_state"


class PayloadTooLarge(ClipwatchError):
    status = 413
    code = "payload_too_large"
