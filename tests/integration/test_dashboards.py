"""Dashboards and alarms watch the metrics the code emits, in both deploy descriptions.

The metric names come from the code's own emit calls (``tests.support.iac.emitted_metrics``
parses ``entrypoints/aws_lambda.py`` and ``lambda_records.py``), the namespace from
``Settings``, the dimensions from ``EmfMetrics``: a renamed metric fails here instead of
leaving a flat line on a dashboard and an alarm that never fires.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from imgpipe.settings import Settings
from tests.support.iac import (
    TERRAFORM,
    emf_dimensions,
    emf_service,
    emitted_metrics,
    load_template,
    load_terraform,
    tf_value,
)

NAMESPACE = "<namespace>"
# The handler function that emits a metric -> the deployed function whose name is its
# function_name dimension (``_emit`` runs in the worker's per-creator path).
EMITTERS = {"sweep_handler": "sweep", "_emit": "worker"}
# Terraform placeholders of dashboard.json.tftpl and the SAM ${...} they stand for.
PLACEHOLDERS = {
    "namespace": ("MetricsNamespace", NAMESPACE),
    "region": ("AWS::Region", "<region>"),
    "worker": ("WorkerFunction", "<worker>"),
    "sweep": ("SweepFunction", "<sweep>"),
    "work_queue": ("WorkQueue.QueueName", "<work_queue>"),
    "work_dlq": ("DeadLetterQueue.QueueName", "<work_dlq>"),
    "plan_dlq": ("PlanDeadLetterQueue.QueueName", "<plan_dlq>"),
}
QUEUE_METRICS = {
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "<work_dlq>"),
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "<plan_dlq>"),
    ("AWS/SQS", "ApproximateAgeOfOldestMessage", "<work_queue>"),
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def module() -> dict[str, Any]:
    return load_terraform()


def sam_dashboard(template: dict[str, Any]) -> dict[str, Any]:
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    by_sam = {sam: marker for sam, marker in PLACEHOLDERS.values()}
    text = re.sub(r"\$\{([^}]+)\}", lambda m: by_sam[m.group(1)], body)
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def tf_dashboard(module: dict[str, Any]) -> dict[str, Any]:
    dashboard = module["resource"]["aws_cloudwatch_dashboard"]["imgpipe"]
    assert "dashboard.json.tftpl" in dashboard["dashboard_body"]
    for name in PLACEHOLDERS:  # every placeholder is passed to templatefile
        assert re.search(rf"\b{name}\s*=", dashboard["dashboard_body"]), name
    text = (TERRAFORM / "dashboard.json.tftpl").read_text()
    text = re.sub(r"\$\{(\w+)\}", lambda m: PLACEHOLDERS[m.group(1)][1], text)
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def dashboard_metrics(dashboard: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(namespace, metric, dimensions) of every metric line of every widget."""
    found = []
    for widget in dashboard["widgets"]:
        for line in widget["properties"]["metrics"]:
            fields = [f for f in line if isinstance(f, str)]
            namespace, metric, *pairs = fields
            found.append((namespace, metric, dict(zip(pairs[::2], pairs[1::2], strict=True))))
    return found


@pytest.fixture(scope="module", params=["sam", "terraform"])
def dashboard(
    request: pytest.FixtureRequest, template: dict[str, Any], module: dict[str, Any]
) -> dict[str, Any]:
    return sam_dashboard(template) if request.param == "sam" else tf_dashboard(module)


def test_the_code_emits_the_metrics_of_issue_11() -> None:
    """The extraction itself: the four names the issue lists, from the code."""
    emitted = emitted_metrics()
    assert set(emitted) >= {"ProcessingDuration", "ImagesProcessed", "ErrorCount", "StuckCreators"}
    assert set(emitted.values()) <= set(EMITTERS)


def test_dashboard_shows_every_emitted_metric_as_emitted(dashboard: dict[str, Any]) -> None:
    emitted = emitted_metrics()
    ours = {
        metric: dimensions
        for namespace, metric, dimensions in dashboard_metrics(dashboard)
        if namespace == NAMESPACE
    }
    assert set(ours) == set(emitted)  # every emitted metric shown, nothing else invented
    for metric, dimensions in ours.items():
        assert set(dimensions) == emf_dimensions()
        assert dimensions["service"] == emf_service()
        assert dimensions["function_name"] == f"<{EMITTERS[emitted[metric]]}>"


def test_dashboard_shows_dead_letters_and_backlog(dashboard: dict[str, Any]) -> None:
    shown = {
        (namespace, metric, dimensions.get("QueueName", ""))
        for namespace, metric, dimensions in dashboard_metrics(dashboard)
        if namespace == "AWS/SQS"
    }
    assert shown >= QUEUE_METRICS


def test_sam_and_terraform_dashboards_are_the_same(
    template: dict[str, Any], module: dict[str, Any]
) -> None:
    assert sam_dashboard(template) == tf_dashboard(module)


def test_namespace_defaults_to_the_settings(
    template: dict[str, Any], module: dict[str, Any]
) -> None:
    default = Settings.model_fields["metrics_namespace"].default
    assert template["Parameters"]["MetricsNamespace"]["Default"] == default
    assert module["variable"]["metrics_namespace"]["default"] == default
    assert module["locals"]["common_environment"]["IMGPIPE_METRICS_NAMESPACE"] == (
        "${var.metrics_namespace}"
    )


# -- alarms --------------------------------------------------------------------------------


def sam_alarms(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Alarms as (namespace, metric, dimensions, threshold), names as placeholders."""
    markers = {
        json.dumps({"Ref": "MetricsNamespace"}): NAMESPACE,
        json.dumps({"Ref": "WorkerFunction"}): "<worker>",
        json.dumps({"Ref": "SweepFunction"}): "<sweep>",
        json.dumps({"Fn::GetAtt": ["WorkQueue", "QueueName"]}): "<work_queue>",
        json.dumps({"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}): "<work_dlq>",
        json.dumps({"Fn::GetAtt": ["PlanDeadLetterQueue", "QueueName"]}): "<plan_dlq>",
    }

    def marker(value: Any) -> Any:
        return markers.get(json.dumps(value), value)

    found = []
    for item in template["Resources"].values():
        if item["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = item["Properties"]
        threshold = props["Threshold"]
        if isinstance(threshold, dict):
            threshold = template["Parameters"][threshold["Ref"]]["Default"]
        found.append(
            {
                "namespace": marker(props["Namespace"]),
                "metric": props["MetricName"],
                "dimensions": {d["Name"]: marker(d["Value"]) for d in props["Dimensions"]},
                "threshold": threshold,
                "comparison": props["ComparisonOperator"],
                "statistic": props["Statistic"],
            }
        )
    return found


def tf_alarms(module: dict[str, Any]) -> list[dict[str, Any]]:
    markers = {
        "${var.metrics_namespace}": NAMESPACE,
        "${aws_lambda_function.worker.function_name}": "<worker>",
        "${aws_lambda_function.sweep.function_name}": "<sweep>",
        "${aws_sqs_queue.work.name}": "<work_queue>",
        "${aws_sqs_queue.work_dlq.name}": "<work_dlq>",
        "${aws_sqs_queue.plan_dlq.name}": "<plan_dlq>",
    }
    found = []
    for body in module["resource"]["aws_cloudwatch_metric_alarm"].values():
        for_each = body.get("for_each")
        keys = for_each if isinstance(for_each, dict) else {None: None}
        for value in keys.values():
            dimensions = {
                k: markers.get(v, v) if v != "${each.value}" else markers.get(value, value)
                for k, v in body["dimensions"].items()
            }
            found.append(
                {
                    "namespace": markers.get(body["namespace"], body["namespace"]),
                    "metric": body["metric_name"],
                    "dimensions": dimensions,
                    "threshold": tf_value(body["threshold"], module),
                    "comparison": body["comparison_operator"],
                    "statistic": body["statistic"],
                }
            )
    return found


@pytest.fixture(scope="module", params=["sam", "terraform"])
def alarms(
    request: pytest.FixtureRequest, template: dict[str, Any], module: dict[str, Any]
) -> list[dict[str, Any]]:
    return sam_alarms(template) if request.param == "sam" else tf_alarms(module)


def _one(alarms: list[dict[str, Any]], metric: str, **dimensions: str) -> dict[str, Any]:
    (alarm,) = [
        a
        for a in alarms
        if a["metric"] == metric and all(a["dimensions"].get(k) == v for k, v in dimensions.items())
    ]
    return alarm


def test_dead_letter_queues_alarm_on_any_message(alarms: list[dict[str, Any]]) -> None:
    for queue in ("<work_dlq>", "<plan_dlq>"):
        alarm = _one(alarms, "ApproximateNumberOfMessagesVisible", QueueName=queue)
        assert alarm["namespace"] == "AWS/SQS"
        assert (alarm["threshold"], alarm["comparison"]) == (0, "GreaterThanThreshold")


def test_work_queue_age_alarms(alarms: list[dict[str, Any]]) -> None:
    alarm = _one(alarms, "ApproximateAgeOfOldestMessage", QueueName="<work_queue>")
    assert alarm["namespace"] == "AWS/SQS" and alarm["statistic"] == "Maximum"
    assert alarm["threshold"] == 3600


@pytest.mark.parametrize(
    ("metric", "threshold"),
    [("StuckCreators", 0), ("BatchesFailingToFinalise", 0), ("ErrorCount", 100)],
)
def test_code_metrics_alarm_with_the_dimensions_emitted(
    alarms: list[dict[str, Any]], metric: str, threshold: int
) -> None:
    emitted = emitted_metrics()
    assert metric in emitted  # an alarm on a metric the code no longer emits never fires
    alarm = _one(alarms, metric)
    assert alarm["namespace"] == NAMESPACE
    assert alarm["dimensions"] == {
        "service": emf_service(),
        "function_name": f"<{EMITTERS[emitted[metric]]}>",
    }
    assert set(alarm["dimensions"]) == emf_dimensions()
    assert (alarm["threshold"], alarm["comparison"]) == (threshold, "GreaterThanThreshold")


def test_every_alarm_in_our_namespace_watches_an_emitted_metric(
    alarms: list[dict[str, Any]],
) -> None:
    ours = {a["metric"] for a in alarms if a["namespace"] == NAMESPACE}
    assert ours and ours <= set(emitted_metrics())
