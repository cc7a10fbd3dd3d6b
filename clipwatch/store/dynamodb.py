"""DynamoDB backend. Predictions: partition key ``stream_id``, sort key ``sequence`` (a stream's
timeline is one Query). Review tasks: key ``task_id`` with a ``status``/``created_at`` index for
the queue. Conditional writes make repeated events harmless. The item also carries the seed
sample's fields (segment path, class name, probability, UTC creation time) as plain attributes,
so dashboards built for the seed's table keep working."""

from __future__ import annotations

from decimal import Decimal
from typing import Optional

from ..records import Prediction, ReviewTask


class DynamoStore:
    def __init__(self, prefix: str = "clipwatch", client=None):
        import boto3

        self.client = client or boto3.client("dynamodb")
        self.predictions_table = f"{prefix}-predictions"
        self.tasks_table = f"{prefix}-review-tasks"

    def create_tables(self) -> None:
        """For local stacks and tests; in AWS the CloudFormation template owns the tables."""
        existing = set(self.client.list_tables()["TableNames"])
        if self.predictions_table not in existing:
            self.client.create_table(
                TableName=self.predictions_table, BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": "stream_id", "AttributeType": "S"},
                                      {"AttributeName": "sequence", "AttributeType": "N"}],
                KeySchema=[{"AttributeName": "stream_id", "KeyType": "HASH"},
                           {"AttributeName": "sequence", "KeyType": "RANGE"}])
        if self.tasks_table not in existing:
            self.client.create_table(
                TableName=self.tasks_table, BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": "task_id", "AttributeType": "S"},
                                      {"AttributeName": "status", "AttributeType": "S"},
                                      {"AttributeName": "created_at", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "task_id", "KeyType": "HASH"}],
                GlobalSecondaryIndexes=[{
                    "IndexName": "by-status",
                    "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"},
                                  {"AttributeName": "created_at", "KeyType": "RANGE"}],
                    "Projection": {"ProjectionType": "ALL"}}])
        waiter = self.client.get_waiter("table_exists")
        for table in (self.predictions_table, self.tasks_table):
            waiter.wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 30})

    def put_prediction(self, p: Prediction) -> bool:
        item = {
            "stream_id": {"S": p.stream_id},
            "sequence": {"N": str(p.sequence)},
            "segment_uri": {"S": p.segment_uri},
            "model_version": {"S": p.model_version},
            "label": {"S": p.label},
            "probability": {"N": str(Decimal(repr(p.confidence)))},
            "needs_review": {"BOOL": p.review.needs_review},
            "created_at": {"S": p.created_at},
            "prediction": {"S": p.model_dump_json(exclude={"stored"})},
        }
        try:
            self.client.put_item(
                TableName=self.predictions_table, Item=item,
                ConditionExpression="attribute_not_exists(stream_id) OR model_version <> :v",
                ExpressionAttributeValues={":v": {"S": p.model_version}})
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def get_prediction(self, stream_id: str, sequence: int) -> Optional[Prediction]:
        resp = self.client.get_item(
            TableName=self.predictions_table, ConsistentRead=True,
            Key={"stream_id": {"S": stream_id}, "sequence": {"N": str(sequence)}})
        item = resp.get("Item")
        return Prediction.model_validate_json(item["prediction"]["S"]) if item else None

    def timeline(self, stream_id: str, first: int | None = None,
                 last: int | None = None) -> list[Prediction]:
        values = {":s": {"S": stream_id},
                  ":lo": {"N": str(first if first is not None else -(1 << 62))},
                  ":hi": {"N": str(last if last is not None else 1 << 62)}}
        out = []
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(
                TableName=self.predictions_table, ConsistentRead=True,
                KeyConditionExpression="stream_id = :s AND #q BETWEEN :lo AND :hi",
                ExpressionAttributeNames={"#q": "sequence"}, ExpressionAttributeValues=values):
            out.extend(Prediction.model_validate_json(i["prediction"]["S"]) for i in page["Items"])
        return out

    def put_review_task(self, task: ReviewTask) -> bool:
        try:
            self.client.put_item(
                TableName=self.tasks_table,
                Item={"task_id": {"S": task.task_id}, "status": {"S": task.status},
                      "created_at": {"S": task.created_at},
                      "stream_id": {"S": task.stream_id}, "sequence": {"N": str(task.sequence)},
                      "task": {"S": task.model_dump_json()}},
                ConditionExpression="attribute_not_exists(task_id)")
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def review_tasks(self, status: str = "pending", limit: int = 100) -> list[ReviewTask]:
        resp = self.client.query(
            TableName=self.tasks_table, IndexName="by-status", Limit=limit,
            KeyConditionExpression="#st = :s", ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues={":s": {"S": status}})
        return [ReviewTask.model_validate_json(i["task"]["S"]) for i in resp["Items"]]

    def close(self) -> None:
        self.client.close()
