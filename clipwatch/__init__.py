"""clipwatch: activity detection on live HLS video streams, with humans in the loop.

This package is the small shared core: records, configuration, blob and prediction stores,
metric names and the CLI. It imports only the standard library, boto3 and pydantic.
"""

__version__ = "0.1.0"
