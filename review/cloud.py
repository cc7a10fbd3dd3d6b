"""The cloud path: the same review, run by SageMaker Ground Truth or Amazon A2I.

- ``labeling_job_request``: a Ground Truth *custom* labeling job over an input manifest of
  flagged segments (``{"source": "s3://…ts", …}`` lines, as ``groundtruth_input_manifest``
  writes them), whose worker UI is our task template (``task_template``), uploaded to S3.
- ``flow_definition_request`` / ``human_loop_request``: an A2I flow definition with the same
  template, and one human loop per routed prediction. A2I's built-in activation conditions exist
  only for Rekognition and Textract; for a custom model the routing policy *is* the activation
  condition, so clipwatch starts the loop itself with the reasons in the input.

These build boto3 requests; nothing here sends them (``submit=True`` in the CLI-less helpers
below would). Tests validate every request against botocore's service models with Stubber.
"""

from __future__ import annotations

import json
from typing import Optional

from clipwatch.records import Prediction, ReviewTask

from .exports import LABEL_ATTRIBUTE


def task_template(labels: list[str]) -> str:
    """A Ground Truth / A2I Liquid task template: the segment's video (granted read access by
    Ground Truth), begin/stop recording segments while it plays, a label per segment, the
    whole-clip activity, model-correct and a 1–5 rating. Its answer carries the same
    ``annotations.streams`` shape as our export, so both paths feed the same training list."""
    options = "".join(f'<option value="{label}">{label}</option>' for label in labels)
    radios = "".join(f'<crowd-radio-button name="activity-{label}" value="{label}">{label}</crowd-radio-button>'
                     for label in labels)
    return f"""<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<crowd-form>
  <video id="video" src="{{{{ task.input.source | grant_read_access }}}}" controls preload="auto" style="width:100%"></video>
  <p>Model: <b>{{{{ task.input.label }}}}</b> ({{{{ task.input.confidence }}}}) — {{{{ task.input.reasons }}}}</p>
  <button type="button" id="rec">Begin recording</button>
  <select id="seg-label">{options}</select>
  <ol id="segments"></ol>
  <input type="hidden" name="annotations" id="annotations">
  <h3>Whole clip</h3>
  <crowd-radio-group>{radios}</crowd-radio-group>
  <crowd-checkbox name="modelCorrect">The model was correct</crowd-checkbox>
  <crowd-slider name="rating" min="1" max="5" step="1" pin="true">Clip quality for training</crowd-slider>
  <crowd-text-area name="notes" placeholder="notes"></crowd-text-area>
</crowd-form>
<script>
  const video = document.getElementById("video"), rec = document.getElementById("rec");
  const segments = [], out = document.getElementById("annotations");
  let start = null;
  function save() {{
    const streams = {{ activity: segments }};
    out.value = JSON.stringify({{ categories: {{ activity: {json.dumps(labels)} }}, streams }});
  }}
  rec.addEventListener("click", () => {{
    if (start === null) {{ start = video.currentTime; rec.textContent = "Stop recording"; video.play(); return; }}
    const seg = {{ id: "s" + (segments.length + 1), start: start, end: video.currentTime,
                  label: document.getElementById("seg-label").value, text: "" }};
    start = null; rec.textContent = "Begin recording";
    if (seg.end > seg.start) {{ segments.push(seg); const li = document.createElement("li");
      li.textContent = seg.label + " " + seg.start.toFixed(3) + "–" + seg.end.toFixed(3) + " s";
      document.getElementById("segments").append(li); save(); }}
  }});
  save();
</script>
"""


def groundtruth_input_manifest(tasks: list[ReviewTask]) -> str:
    """Input manifest lines for a labeling job over pending review tasks."""
    return "".join(json.dumps({"source": t.segment_uri, "task-id": t.task_id, "label": t.label,
                               "confidence": round(t.confidence, 4), "reasons": "; ".join(t.reasons)}) + "\n"
                   for t in tasks)


def labeling_job_request(job_name: str, manifest_s3_uri: str, output_s3_uri: str, role_arn: str,
                         workteam_arn: str, template_s3_uri: str, pre_lambda_arn: str,
                         consolidation_lambda_arn: str, workers_per_clip: int = 1,
                         seconds_per_task: int = 600) -> dict:
    """``CreateLabelingJob`` for a custom task. Ground Truth's custom workflows need a
    pre-annotation Lambda (passes the manifest line through as ``task.input``) and an
    annotation-consolidation Lambda (may be the identity); their ARNs are the caller's."""
    return {
        "LabelingJobName": job_name,
        "LabelAttributeName": LABEL_ATTRIBUTE,
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": manifest_s3_uri}},
                        "DataAttributes": {"ContentClassifiers": ["FreeOfPersonallyIdentifiableInformation"]}},
        "OutputConfig": {"S3OutputPath": output_s3_uri},
        "RoleArn": role_arn,
        "HumanTaskConfig": {
            "WorkteamArn": workteam_arn,
            "UiConfig": {"UiTemplateS3Uri": template_s3_uri},
            "PreHumanTaskLambdaArn": pre_lambda_arn,
            "TaskTitle": "Label activities in a video segment",
            "TaskDescription": "Mark when each activity starts and stops; correct the model.",
            "TaskKeywords": ["video", "activity", "segmentation"],
            "NumberOfHumanWorkersPerDataObject": workers_per_clip,
            "TaskTimeLimitInSeconds": seconds_per_task,
            "TaskAvailabilityLifetimeInSeconds": 864000,
            "MaxConcurrentTaskCount": 100,
            "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": consolidation_lambda_arn},
        },
        "Tags": [{"Key": "app", "Value": "clipwatch"}],
    }


def flow_definition_request(name: str, role_arn: str, workteam_arn: str, human_task_ui_arn: str,
                            output_s3_uri: str, workers_per_clip: int = 1) -> dict:
    """``CreateFlowDefinition`` (A2I) whose task UI is our template (``CreateHumanTaskUi``
    with ``task_template`` gives the ARN)."""
    return {
        "FlowDefinitionName": name,
        "HumanLoopConfig": {
            "WorkteamArn": workteam_arn, "HumanTaskUiArn": human_task_ui_arn,
            "TaskTitle": "Check an uncertain activity prediction",
            "TaskDescription": "Mark when each activity starts and stops; correct the model.",
            "TaskCount": workers_per_clip, "TaskTimeLimitInSeconds": 600,
        },
        "OutputConfig": {"S3OutputPath": output_s3_uri},
        "RoleArn": role_arn,
    }


def human_task_ui_request(name: str, labels: list[str]) -> dict:
    return {"HumanTaskUiName": name, "UiTemplate": {"Content": task_template(labels)}}


def human_loop_request(flow_definition_arn: str, prediction: Prediction,
                       loop_name: Optional[str] = None) -> dict:
    """``StartHumanLoop`` (sagemaker-a2i-runtime) for one routed prediction; the policy's
    reasons travel in the input, as A2I records which activation conditions fired."""
    import hashlib

    key = f"{prediction.stream_id}#{prediction.sequence}#{prediction.model_version}"
    name = loop_name or "cw-" + hashlib.sha1(key.encode()).hexdigest()[:40]
    content = {"source": prediction.segment_uri, "label": prediction.label,
               "confidence": round(prediction.confidence, 4), "reasons": "; ".join(prediction.review.reasons),
               "top_k": [s.model_dump() for s in prediction.top_k], "stream_id": prediction.stream_id,
               "sequence": prediction.sequence, "model_version": prediction.model_version}
    return {"HumanLoopName": name, "FlowDefinitionArn": flow_definition_arn,
            "HumanLoopInput": {"InputContent": json.dumps(content)},
            "DataAttributes": {"ContentClassifiers": ["FreeOfPersonallyIdentifiableInformation"]}}
