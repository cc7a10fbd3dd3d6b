"""DynamoDB backend. Predictions: partition key ``stream_id``, sort key ``sequence`` (a stream's
timeline is one Query). Review tasks: key ``task_id`` with a ``status``/``created_at`` index for
the queue and a ``stream_id``/``created_at`` index for the per-stream review budget; a task
changes only by a write conditional on its ``revision``. Annotations and audits: partition key
``task_id``, sort key ``item_id`` (``annotation#…`` / ``audit#…``), one Query per task.
Conditional writes make repeated events harmless. The item also carries the seed
sample's fields (segment path, class name, probability, UTC creation time) as plain attributes,
so dashboards built for the seed's table keep working."""

from __future__ import annotations

import random
import time
from decimal import Decimal
from typing import Callable, Optional

from ..records import Annotation, AuditRecord, Prediction, Presegmentation, ReviewTask


TRANSACTION_ATTEMPTS = 8
# DynamoDB throttles (ProvisionedThroughputExceeded, on-demand bursts) and has rare 5xx: its own
# SDKs retry 10 times with backoff; botocore's default of 3 attempts loses writes under a burst.
RETRIES = {"mode": "standard", "max_attempts": 10}


class DynamoStore:
    def __init__(self, prefix: str = "clipwatch", client=None):
        import boto3
        from botocore.config import Config

        self.client = client or boto3.client("dynamodb", config=Config(retries=RETRIES))
        self.predictions_table = f"{prefix}-predictions"
        self.tasks_table = f"{prefix}-review-tasks"
        self.annotations_table = f"{prefix}-annotations"

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
                                      {"AttributeName": "stream_id", "AttributeType": "S"},
                                      {"AttributeName": "created_at", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "task_id", "KeyType": "HASH"}],
                GlobalSecondaryIndexes=[{
                    "IndexName": "by-status",
                    "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"},
                                  {"AttributeName": "created_at", "KeyType": "RANGE"}],
                    "Projection": {"ProjectionType": "ALL"}}, {
                    "IndexName": "by-stream",
                    "KeySchema": [{"AttributeName": "stream_id", "KeyType": "HASH"},
                                  {"AttributeName": "created_at", "KeyType": "RANGE"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"}}])
        if self.annotations_table not in existing:
            self.client.create_table(
                TableName=self.annotations_table, BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": "task_id", "AttributeType": "S"},
                                      {"AttributeName": "item_id", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "task_id", "KeyType": "HASH"},
                           {"AttributeName": "item_id", "KeyType": "RANGE"}])
        waiter = self.client.get_waiter("table_exists")
        for table in (self.predictions_table, self.tasks_table, self.annotations_table):
            waiter.wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 30})

    def put_prediction(self, p: Prediction, task: Optional[ReviewTask] = None) -> bool:
        item = {
            "stream_id": {"S": p.stream_id},
            "sequence": {"N": str(p.sequence)},
            "segment_uri": {"S": p.segment_uri},
            "model_version": {"S": p.model_version},
            "label": {"S": p.label},
            "probability": {"N": str(Decimal(repr(p.confidence)))},
            "needs_review": {"BOOL": p.review.needs_review},
            "created_at": {"S": p.created_at},
            "model_created_at": {"S": p.model_created_at or ""},
            "prediction": {"S": p.model_dump_json(exclude={"stored"})},
        }
        put = {"TableName": self.predictions_table, "Item": item,  # newest model wins (SQLiteStore says why)
               "ConditionExpression": "attribute_not_exists(stream_id) OR (model_version <> :v AND "
                                      "(attribute_not_exists(model_created_at) OR model_created_at < :c))",
               "ExpressionAttributeValues": {":v": {"S": p.model_version}, ":c": {"S": p.model_created_at or ""}}}
        if task is None:
            try:
                self.client.put_item(**put)
            except self.client.exceptions.ConditionalCheckFailedException:
                return False
            return True
        # A flagged prediction and its review task: one transaction, both or neither.
        items = [{"Put": put}, {"Put": {"TableName": self.tasks_table, "Item": self._task_item(task),
                                        "ConditionExpression": "attribute_not_exists(task_id)"}}]
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                self.client.transact_write_items(TransactItems=items)
                return True
            except self.client.exceptions.TransactionCanceledException as exc:
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if "ConditionalCheckFailed" in reasons:
                    return False  # already stored (or a newer model's): a repeated event
                if attempt == TRANSACTION_ATTEMPTS:
                    raise
                # TransactionConflict or throttling inside the transaction: botocore does not
                # retry a cancelled transaction, so back off here (full jitter).
                time.sleep(random.uniform(0, min(2.0, 0.05 * 2 ** attempt)))
        raise AssertionError("unreachable")

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
            self.client.put_item(TableName=self.tasks_table, Item=self._task_item(task),
                                 ConditionExpression="attribute_not_exists(task_id)")
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    @staticmethod
    def _task_item(task: ReviewTask) -> dict:
        return {"task_id": {"S": task.task_id}, "status": {"S": task.status},
                "created_at": {"S": task.created_at}, "revision": {"N": str(task.revision)},
                "stream_id": {"S": task.stream_id}, "sequence": {"N": str(task.sequence)},
                "task": {"S": task.model_dump_json()}}

    def review_tasks(self, status: str = "pending", limit: int = 100) -> list[ReviewTask]:
        out: list[ReviewTask] = []
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(
                TableName=self.tasks_table, IndexName="by-status",
                KeyConditionExpression="#st = :s", ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues={":s": {"S": status}},
                PaginationConfig={"MaxItems": limit}):
            out.extend(ReviewTask.model_validate_json(i["task"]["S"]) for i in page["Items"])
        return out[:limit]

    def get_review_task(self, task_id: str) -> Optional[ReviewTask]:
        item = self.client.get_item(TableName=self.tasks_table, ConsistentRead=True,
                                    Key={"task_id": {"S": task_id}}).get("Item")
        return ReviewTask.model_validate_json(item["task"]["S"]) if item else None

    def update_review_task(self, task: ReviewTask) -> bool:
        new = task.model_copy(update={"revision": task.revision + 1})
        condition = "#rev = :r"
        if task.revision == 0:  # tasks written before revisions existed have none
            condition = "attribute_not_exists(#rev) OR #rev = :r"
        try:
            self.client.update_item(
                TableName=self.tasks_table, Key={"task_id": {"S": task.task_id}},
                UpdateExpression="SET #st = :st, #t = :t, #rev = :n",
                ConditionExpression=f"attribute_exists(task_id) AND ({condition})",
                ExpressionAttributeNames={"#st": "status", "#t": "task", "#rev": "revision"},
                ExpressionAttributeValues={":st": {"S": new.status}, ":t": {"S": new.model_dump_json()},
                                           ":n": {"N": str(new.revision)},
                                           ":r": {"N": str(task.revision)}})
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        task.revision += 1
        return True

    def count_review_tasks(self, stream_id: str, since: str) -> int:
        total = 0
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(
                TableName=self.tasks_table, IndexName="by-stream", Select="COUNT",
                KeyConditionExpression="stream_id = :s AND created_at >= :t",
                ExpressionAttributeValues={":s": {"S": stream_id}, ":t": {"S": since}}):
            total += page["Count"]
        return total

    # --- predictions, read side of the review tool -------------------------------------------

    def recent(self, stream_id: str, limit: int = 20) -> list[Prediction]:
        resp = self.client.query(
            TableName=self.predictions_table, ScanIndexForward=False, Limit=limit,
            KeyConditionExpression="stream_id = :s", ExpressionAttributeValues={":s": {"S": stream_id}})
        return [Prediction.model_validate_json(i["prediction"]["S"]) for i in resp["Items"]]

    def streams(self) -> list[str]:
        """Distinct streams by a keys-only Scan: fine for an operator page over tens of streams;
        a deployment with thousands keeps a streams table instead."""
        seen: set[str] = set()
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(TableName=self.predictions_table,
                                       ProjectionExpression="stream_id"):
            seen.update(i["stream_id"]["S"] for i in page["Items"])
        return sorted(seen)

    def change_prediction(self, stream_id: str, sequence: int, model_version: str,
                          change: Callable[[Prediction], None], attributes: dict | None = None,
                          attempts: int = 5) -> bool:
        """Apply ``change`` to the stored prediction if it is still ``model_version``'s (and set
        the item's plain ``attributes`` beside it): written only over the body just read, so a
        concurrent change (a review, the proposals) is re-read and kept, never overwritten."""
        key = {"stream_id": {"S": stream_id}, "sequence": {"N": str(sequence)}}
        attributes = attributes or {}
        for _ in range(attempts):
            item = self.client.get_item(TableName=self.predictions_table, Key=key,
                                        ConsistentRead=True).get("Item")
            if item is None or item["model_version"]["S"] != model_version:
                return False
            p = Prediction.model_validate_json(item["prediction"]["S"])
            change(p)
            sets = ", ".join(["prediction = :p", *(f"{name} = :{name}" for name in attributes)])
            try:
                self.client.update_item(
                    TableName=self.predictions_table, Key=key, UpdateExpression=f"SET {sets}",
                    ConditionExpression="model_version = :v AND prediction = :old",
                    ExpressionAttributeValues={":p": {"S": p.model_dump_json(exclude={"stored"})},
                                               ":v": {"S": model_version}, ":old": item["prediction"],
                                               **{f":{name}": value for name, value in attributes.items()}})
                return True
            except self.client.exceptions.ConditionalCheckFailedException:
                continue
        return False

    def record_human_label(self, stream_id: str, sequence: int, model_version: str, label: str,
                           by: str, at: str, status: str) -> bool:
        def review(p: Prediction) -> None:
            p.human_label, p.reviewed_by, p.reviewed_at, p.status = label, by, at, status

        return self.change_prediction(stream_id, sequence, model_version, review,
                                      {"human_label": {"S": label}, "review_status": {"S": status}})

    def attach_presegmentation(self, stream_id: str, sequence: int, model_version: str,
                               presegmentation: Presegmentation) -> bool:
        return self.change_prediction(stream_id, sequence, model_version,
                                      lambda p: setattr(p, "presegmentation", presegmentation))

    # --- annotations and audits --------------------------------------------------------------

    def _put_item(self, task_id: str, item_id: str, body: str) -> None:
        self.client.put_item(TableName=self.annotations_table,
                             Item={"task_id": {"S": task_id}, "item_id": {"S": item_id},
                                   "body": {"S": body}},
                             ConditionExpression="attribute_not_exists(item_id)")

    def _items(self, task_id: str, prefix: str) -> list[str]:
        out = []
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(
                TableName=self.annotations_table, ConsistentRead=True,
                KeyConditionExpression="task_id = :t AND begins_with(item_id, :p)",
                ExpressionAttributeValues={":t": {"S": task_id}, ":p": {"S": prefix}}):
            out.extend(i["body"]["S"] for i in page["Items"])
        return out

    def put_annotation(self, annotation: Annotation) -> None:
        # The submission time leads the sort key so a task's annotations come back in order.
        self._put_item(annotation.task_id,
                       f"annotation#{annotation.submitted_at}#{annotation.annotation_id}",
                       annotation.model_dump_json())

    def annotations(self, task_id: str) -> list[Annotation]:
        return [Annotation.model_validate_json(b) for b in self._items(task_id, "annotation#")]

    def put_audit(self, audit: AuditRecord) -> None:
        self._put_item(audit.task_id, f"audit#{audit.created_at}#{audit.audit_id}",
                       audit.model_dump_json())

    def audits(self, task_id: str) -> list[AuditRecord]:
        return [AuditRecord.model_validate_json(b) for b in self._items(task_id, "audit#")]

    def close(self) -> None:
        self.client.close()
