"""From the highest load that met the SLO to a SageMaker target-tracking policy (the seed's
recipe: target SageMakerVariantInvocationsPerInstance = max invocations/min per instance ×
safety factor 0.5), written as Application Auto Scaling requests and as CloudFormation
parameters, and applied through boto3 on request."""

from __future__ import annotations

import math
from typing import Optional

from pydantic import BaseModel, Field

from .slo import SearchOutcome

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"


class PolicySettings(BaseModel):
    endpoint_name: str = Field(default="clipwatch", min_length=1)
    variant: str = Field(default="AllTraffic", min_length=1)
    instance_type: str = "ml.g4dn.2xlarge"
    min_instances: int = Field(default=1, ge=1)
    max_instances: int = Field(default=3, ge=1)       # the seed's template
    scale_in_cooldown_s: int = Field(default=600, ge=0)
    scale_out_cooldown_s: int = Field(default=600, ge=0)
    safety_factor: float = Field(default=0.5, gt=0, le=1)

    @property
    def resource_id(self) -> str:
        return f"endpoint/{self.endpoint_name}/variant/{self.variant}"

    @property
    def policy_name(self) -> str:
        return f"{self.endpoint_name}-invocations-per-instance"


class Recommendation(BaseModel):
    settings: PolicySettings
    search: SearchOutcome
    max_rate_per_instance: Optional[float] = None
    target_value: Optional[int] = None   # None: no load met the SLO, nothing to recommend
    summary: str
    scalable_target: Optional[dict] = None
    scaling_policy: Optional[dict] = None
    cloudformation_parameters: Optional[list[dict]] = None


def recommend(search: SearchOutcome, settings: PolicySettings) -> Recommendation:
    if settings.max_instances < settings.min_instances:
        raise ValueError(f"max instances ({settings.max_instances}) is below min instances "
                         f"({settings.min_instances})")
    if search.max_rate_per_instance is None:
        return Recommendation(settings=settings, search=search,
                              summary=f"no recommendation: {search.summary}")
    # floor: rounding up would set the target above what was measured × the safety factor
    target = max(1, math.floor(search.max_rate_per_instance * settings.safety_factor))
    rec = Recommendation(
        settings=settings, search=search, max_rate_per_instance=search.max_rate_per_instance,
        target_value=target,
        summary=(f"target {METRIC} = {target} (= {search.max_rate_per_instance:g}/min per instance "
                 f"× safety factor {settings.safety_factor:g}), {settings.min_instances}–"
                 f"{settings.max_instances} × {settings.instance_type}"))
    rec.scalable_target = scalable_target_request(settings)
    rec.scaling_policy = scaling_policy_request(settings, target)
    rec.cloudformation_parameters = cloudformation_parameters(settings, target)
    return rec


def scalable_target_request(s: PolicySettings) -> dict:
    """Arguments of application-autoscaling RegisterScalableTarget."""
    return {"ServiceNamespace": NAMESPACE, "ResourceId": s.resource_id, "ScalableDimension": DIMENSION,
            "MinCapacity": s.min_instances, "MaxCapacity": s.max_instances}


def scaling_policy_request(s: PolicySettings, target: int) -> dict:
    """Arguments of application-autoscaling PutScalingPolicy (target tracking)."""
    return {"PolicyName": s.policy_name, "ServiceNamespace": NAMESPACE, "ResourceId": s.resource_id,
            "ScalableDimension": DIMENSION, "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": float(target),
                "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
                "ScaleInCooldown": s.scale_in_cooldown_s, "ScaleOutCooldown": s.scale_out_cooldown_s}}


def cloudformation_parameters(s: PolicySettings, target: int) -> list[dict]:
    """Parameters of infra/cloudformation/clipwatch.yaml, in `aws cloudformation create-stack
    --parameters file://…` form. Only what the load test decides; the rest keep their defaults."""
    values = {"EndpointName": s.endpoint_name, "InstanceType": s.instance_type,
              "MinInstances": s.min_instances, "MaxInstances": s.max_instances,
              "TargetInvocationsPerInstance": target,
              "ScaleInCooldown": s.scale_in_cooldown_s, "ScaleOutCooldown": s.scale_out_cooldown_s}
    return [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in values.items()]


def apply(rec: Recommendation, client=None) -> dict:
    """Register the scalable target and put the policy; read both back. boto3 honours
    AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING (a local stack) like any AWS endpoint."""
    if rec.target_value is None:
        raise ValueError(f"nothing to apply: {rec.summary}")
    if client is None:
        import boto3

        client = boto3.client("application-autoscaling")
    client.register_scalable_target(**rec.scalable_target)
    put = client.put_scaling_policy(**rec.scaling_policy)
    s = rec.settings
    targets = client.describe_scalable_targets(ServiceNamespace=NAMESPACE, ResourceIds=[s.resource_id],
                                               ScalableDimension=DIMENSION)["ScalableTargets"]
    policies = client.describe_scaling_policies(ServiceNamespace=NAMESPACE, ResourceId=s.resource_id,
                                                ScalableDimension=DIMENSION,
                                                PolicyNames=[s.policy_name])["ScalingPolicies"]
    if not targets or not policies:
        raise RuntimeError(f"Application Auto Scaling did not keep the policy for {s.resource_id}")
    applied = policies[0]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
    return {"policy_arn": put["PolicyARN"], "resource_id": s.resource_id,
            "min_capacity": targets[0]["MinCapacity"], "max_capacity": targets[0]["MaxCapacity"],
            "target_value": applied}
