"""The CloudFormation stack: cfn-lint clean (this is how `make test` lints it), and the
properties that matter checked against the code that depends on them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "infra" / "cloudformation" / "clipwatch.yaml"


@pytest.fixture(scope="module")
def template() -> dict:
    from cfnlint.decode import cfn_yaml

    return cfn_yaml.load(str(TEMPLATE))


def resources(template, kind):
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def test_cfn_lint_is_clean_including_informational_checks():
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    proc = subprocess.run([str(cfn_lint), "--include-checks", "I", "--", str(TEMPLATE)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_endpoint_runs_on_gpu_instances_by_default(template):
    p = template["Parameters"]["InstanceType"]
    assert p["Default"] == "ml.g4dn.2xlarge"
    gpu = [t for t in p["AllowedValues"] if t.startswith(("ml.g4dn.", "ml.g5."))]
    assert len(gpu) >= 6
    variant = resources(template, "AWS::SageMaker::EndpointConfig")["EndpointConfig"]["Properties"]["ProductionVariants"][0]
    assert variant["InstanceType"] == {"Ref": "InstanceType"} and variant["VariantName"] == "AllTraffic"


def test_autoscaling_is_target_tracking_on_invocations_per_instance_from_parameters(template):
    target = resources(template, "AWS::ApplicationAutoScaling::ScalableTarget")["ScalableTarget"]["Properties"]
    assert target["ResourceId"] == {"Fn::Sub": "endpoint/${Endpoint.EndpointName}/variant/AllTraffic"}
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert (target["MinCapacity"], target["MaxCapacity"]) == ({"Ref": "MinInstances"}, {"Ref": "MaxInstances"})
    policy = resources(template, "AWS::ApplicationAutoScaling::ScalingPolicy")["InvocationsScalingPolicy"]["Properties"]
    cfg = policy["TargetTrackingScalingPolicyConfiguration"]
    assert cfg["TargetValue"] == {"Ref": "TargetInvocationsPerInstance"}
    assert cfg["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    assert template["Parameters"]["ScaleOutCooldown"]["Default"] == 600  # the seed's template


def _satisfies(param: dict, value: str) -> bool:
    if "AllowedValues" in param and value not in [str(v) for v in param["AllowedValues"]]:
        return False
    if "AllowedPattern" in param and not re.fullmatch(param["AllowedPattern"], value):
        return False
    if param["Type"] == "Number":
        n = float(value)
        return param.get("MinValue", -1e18) <= n <= param.get("MaxValue", 1e18)
    return True


@pytest.mark.parametrize("instance_type", ["ml.g4dn.2xlarge", "ml.g5.xlarge"])
def test_parameters_rendered_from_a_load_test_fit_the_template(template, instance_type):
    """A load test's recommendation → cloudformation-parameters.json → this template."""
    from loadtest.recommend import PolicySettings, recommend
    from loadtest.slo import Slo, best_rate
    from loadtest.stats import StepStats

    steps = [StepStats(index=0, offered_per_min=600, seconds=60, sent=600, completed=600, ok=590, errors=10,
                       error_rate=0.017, errors_by_code={"timeout": 10}, achieved_per_min=590, p90_ms=310)]
    rec = recommend(best_rate(steps, Slo(latency_ms=350)),
                    PolicySettings(instance_type=instance_type, max_instances=5))
    params = {p["ParameterKey"]: p["ParameterValue"] for p in rec.cloudformation_parameters}
    declared = template["Parameters"]
    assert set(params) <= set(declared)
    for key, value in params.items():
        assert _satisfies(declared[key], value), (key, value)
    assert params["TargetInvocationsPerInstance"] == "300" and params["MaxInstances"] == "5"
    # parameters the load test does not decide have defaults or are deployment-specific inputs
    missing = {k for k, p in declared.items() if k not in params and "Default" not in p}
    assert missing == {"ImageUri", "ModelDataUrl", "LambdaCodeBucket"}


def test_tables_match_the_store_code_and_have_pitr_and_encryption(template):
    from clipwatch.store.dynamodb import DynamoStore

    class Recorder:  # captures the schema the store creates locally, to compare with the stack's
        def __init__(self):
            self.tables = {}

        def list_tables(self):
            return {"TableNames": []}

        def create_table(self, **kw):
            self.tables[kw["TableName"]] = kw

        def get_waiter(self, name):
            return type("W", (), {"wait": lambda *a, **k: None})()

    rec = Recorder()
    DynamoStore(prefix="clipwatch", client=rec).create_tables()
    tables = {t["Properties"]["TableName"]["Fn::Sub"].replace("${NamePrefix}", "clipwatch"): t
              for t in resources(template, "AWS::DynamoDB::Table").values()}
    assert set(tables) == set(rec.tables)  # every table the code uses, and no other
    for name, t in tables.items():
        p, code = t["Properties"], rec.tables[name]
        assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert p["SSESpecification"]["SSEEnabled"] is True
        assert t["DeletionPolicy"] == "Retain" and p["BillingMode"] == code["BillingMode"]
        assert p["KeySchema"] == code["KeySchema"], name
        assert sorted(map(dict, p["AttributeDefinitions"]), key=str) == sorted(code["AttributeDefinitions"], key=str)
        assert [(g["IndexName"], g["KeySchema"], g["Projection"]) for g in p.get("GlobalSecondaryIndexes", [])] == \
               [(g["IndexName"], g["KeySchema"], g["Projection"]) for g in code.get("GlobalSecondaryIndexes", [])], name
    env = resources(template, "AWS::SageMaker::Model")["Model"]["Properties"]["PrimaryContainer"]["Environment"]
    assert env["CLIPWATCH_STORE"] == {"Fn::Sub": "dynamodb://${NamePrefix}"}  # → tables <prefix>-…


def test_every_log_group_has_a_retention(template):
    groups = resources(template, "AWS::Logs::LogGroup")
    assert {g["Properties"]["LogGroupName"]["Fn::Sub"] for g in groups.values()} == {
        "/aws/lambda/${NamePrefix}-segment-trigger", "/aws/sagemaker/Endpoints/${EndpointName}"}
    assert all(g["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"} for g in groups.values())


def _statements(template):
    for name, r in template["Resources"].items():
        if r["Type"] == "AWS::IAM::Role":
            for policy in r["Properties"].get("Policies", []):
                for st in policy["PolicyDocument"]["Statement"]:
                    yield name, st
        if r["Type"] == "AWS::IAM::ManagedPolicy":
            for st in r["Properties"]["PolicyDocument"]["Statement"]:
                yield name, st


def test_iam_is_least_privilege(template):
    # the only actions AWS offers no resource-level permission for, or scoped by a condition
    wildcard_ok = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
    for role, st in _statements(template):
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        assert all("*" not in a for a in actions), (role, actions)
        assert not any(a.startswith("iam:") for a in actions), (role, actions)
        if st["Resource"] == "*":
            assert set(actions) <= wildcard_ok, (role, actions)
            if "cloudwatch:PutMetricData" in actions:
                assert "Condition" in st
    roles = resources(template, "AWS::IAM::Role")
    assert not any("ManagedPolicyArns" in r["Properties"] for r in roles.values())  # no broad AWS policies
    trigger = [st for role, st in _statements(template) if role == "TriggerRole"]
    invoke = next(st for st in trigger if st["Action"] == "sagemaker:InvokeEndpoint")
    assert invoke["Resource"]["Fn::Sub"].endswith(":endpoint/${EndpointName}")


def test_the_trigger_is_the_lambda_handler_in_the_code(template):
    import importlib

    fn = resources(template, "AWS::Lambda::Function")["TriggerFunction"]["Properties"]
    module, func = fn["Handler"].rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), func))
    mapping = resources(template, "AWS::Lambda::EventSourceMapping")["TriggerEventSource"]["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    bucket = resources(template, "AWS::S3::Bucket")["SegmentBucket"]["Properties"]
    rule = bucket["NotificationConfiguration"]["QueueConfigurations"][0]["Filter"]["S3Key"]["Rules"][0]
    assert rule == {"Name": "suffix", "Value": ".ts"}


def test_kafka_is_optional(template):
    kafka = [n for n, r in template["Resources"].items() if r["Type"].startswith("AWS::MSK::")
             or n.startswith("Kafka")]
    assert kafka and all(template["Resources"][n].get("Condition") == "CreateKafka" for n in kafka)
    assert template["Parameters"]["EnableKafka"]["Default"] == "false"


def test_the_kafka_policy_covers_exactly_the_topics_and_group_the_code_uses(template):
    """MSK IAM authorises per topic: the workers' policy must name every topic the follower,
    bridge and workers use (streaming.events.Topics, derived from the same prefix) and the
    workers' default consumer group; the bus must speak MSK IAM to the cluster it creates."""
    import fnmatch
    import inspect

    from streaming.events import Topics
    from streaming.kafka_connection import SCHEMES
    from streaming.worker import Worker

    policy = template["Resources"]["KafkaWorkerPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    prefix = template["Parameters"]["KafkaTopicPrefix"]["Default"]

    def arns(statement) -> list[str]:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        return [r["Fn::Sub"][0] for r in resources if "Fn::Sub" in r]

    topic_st = next(st for st in policy if "kafka-cluster:WriteData" in st["Action"])
    named = {a.rsplit("/", 1)[1].replace("${KafkaTopicPrefix}", prefix) for a in arns(topic_st)}
    assert named == set(Topics.with_prefix(prefix).all())
    assert {"kafka-cluster:ReadData", "kafka-cluster:CreateTopic", "kafka-cluster:DescribeTopic"} <= set(topic_st["Action"])
    group_st = next(st for st in policy if "kafka-cluster:AlterGroup" in st["Action"])
    default_group = inspect.signature(Worker).parameters["group"].default
    assert all(fnmatch.fnmatch(default_group, a.rsplit("/", 1)[1]) for a in arns(group_st))
    cluster_st = next(st for st in policy if "kafka-cluster:Connect" in st["Action"])
    assert "kafka-cluster:WriteDataIdempotently" in cluster_st["Action"]  # kafka-python 3 producers
    cluster = template["Resources"]["KafkaCluster"]["Properties"]
    assert cluster["ClientAuthentication"]["Sasl"]["Iam"]["Enabled"] is True and SCHEMES["kafka+iam"] == "SASL_SSL"
