"""``deploy/template.yaml`` agrees with the code it deploys.

The numbers of issue 3 (lifecycle, queue, function sizes, events), the table
layout of ``create_state_table``, the queue attributes and function timeouts of
``aws_resources``, the environment names ``Settings`` reads, the handler paths,
and IAM policies that hold only actions the code performs (one role per
function: planner, worker, compression, sweep, API). ``make iac-lint`` (cfn-lint, checkov)
checks the template's syntax and security; this checks its meaning.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest

from imgpipe.adapters.aws_resources import (
    COMPRESS_TIMEOUT,
    MAX_RECEIVE_COUNT,
    PLAN_QUEUE_ATTRIBUTES,
    PLANNER_TIMEOUT,
    QUEUE_ATTRIBUTES,
    SWEEP_TIMEOUT,
    WORKER_TIMEOUT,
)
from imgpipe.service.compress import COMPRESSED_PREFIX, is_compressible_key
from imgpipe.settings import Settings
from tests.support.iac import (
    HANDLERS,
    INDEXES,
    NEEDS,
    NOTIFIERS,
    TRACING_ACTIONS,
    USED,
    as_list,
    evidence_missing,
    function,
    load_template,
    resolve,
    resource,
    state_table_calls,
    statements,
    unknown_environment,
)

BUCKETS = ("InputBucket", "OutputBucket", "TempBucket")
FUNCTIONS = (
    "PlannerFunction",
    "WorkerFunction",
    "CompressFunction",
    "SweepFunction",
    "ApiFunction",
)
ROLES = {name: name.removesuffix("Function") + "Role" for name in FUNCTIONS}
# Functions the input bucket notifies: they may not refer to the bucket resource.
NOTIFIED = ("PlannerFunction", "CompressFunction")
# (queue, its dead-letter queue, the consuming function, attributes in aws_resources)
QUEUES = (
    ("WorkQueue", "DeadLetterQueue", "WorkerFunction", QUEUE_ATTRIBUTES),
    ("PlanQueue", "PlanDeadLetterQueue", "PlannerFunction", PLAN_QUEUE_ATTRIBUTES),
)
NO_VALUE = {"Ref": "AWS::NoValue"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


# -- storage ---------------------------------------------------------------------------


def test_input_bucket_keeps_the_original_lifecycle_rules(template: dict[str, Any]) -> None:
    rules = resource(template, "InputBucket")["LifecycleConfiguration"]["Rules"]
    by_prefix = {resolve(r.get("Prefix"), template): r for r in rules if "Prefix" in r}
    csv_rule = by_prefix["csv-files/"]
    assert csv_rule["Status"] == "Enabled"
    assert [(t["StorageClass"], t["TransitionInDays"]) for t in csv_rule["Transitions"]] == [
        ("STANDARD_IA", 30),
        ("GLACIER", 90),
        ("DEEP_ARCHIVE", 365),
    ]
    # CSVs posted to the API live outside the CSV prefix (no S3 event), tiered alike
    assert by_prefix["api-uploads/"]["Transitions"] == csv_rule["Transitions"]
    assert by_prefix["api-uploads/"]["Status"] == "Enabled"
    assert by_prefix["processing/"]["ExpirationInDays"] == 7
    temp = resource(template, "TempBucket")["LifecycleConfiguration"]["Rules"]
    assert {(r.get("Prefix"), r.get("ExpirationInDays")) for r in temp} >= {("processing/", 7)}


def test_prefix_parameters_default_to_the_settings(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert params["CsvPrefix"]["Default"] == Settings.model_fields["csv_prefix"].default
    assert params["CompressPrefix"]["Default"] == Settings.model_fields["compress_prefix"].default


@pytest.mark.parametrize("name", BUCKETS)
def test_buckets_are_private_encrypted_and_tls_only(template: dict[str, Any], name: str) -> None:
    props = resource(template, name)
    assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    policies = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": name}
    ]
    (policy,) = policies
    (deny,) = policy["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [
        {"Fn::GetAtt": [name, "Arn"]},
        {"Fn::Sub": "${" + name + ".Arn}/*"},
    ]


def _input_arn_parts(value: Any) -> tuple[str, Any] | None:
    """``!Sub ["arn:...:::${Input}/path", {Input: name}]`` -> (template, name)."""
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), list):
        text, variables = value["Fn::Sub"]
        if ":s3:::" in text:
            return text, variables.get("Input")
    return None


@pytest.mark.parametrize("function_name", [*NOTIFIED, "WorkerFunction", "SweepFunction"])
def test_input_bucket_name_is_built_the_same_everywhere(
    template: dict[str, Any], function_name: str
) -> None:
    """The notified functions cannot reference the bucket (circular): the name is repeated.

    The worker and the sweep are not notified, but name the bucket the same way.
    """
    name = resource(template, "InputBucket")["BucketName"]
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["IMGPIPE_INPUT_BUCKET"] == name
    role = ROLES[function_name]
    arns = [
        parts
        for s in statements(template, role)
        for r in as_list(s["Resource"])
        if (parts := _input_arn_parts(r)) is not None
    ]
    assert arns
    for text, bucket in arns:
        assert text.startswith("arn:${AWS::Partition}:s3:::${Input}/")
        assert bucket == name
    assert "InputBucket" not in json.dumps(resource(template, role)).replace("InputBucketName", "")


def test_bucket_names_are_generated_unless_given(template: dict[str, Any]) -> None:
    """A retained bucket with a fixed name would block the next deployment."""
    for bucket in ("OutputBucket", "TempBucket"):
        parameter = bucket + "Name"
        assert template["Parameters"][parameter]["Default"] == ""
        assert resource(template, bucket)["BucketName"] == {
            "Fn::If": [f"Has{parameter}", {"Ref": parameter}, NO_VALUE]
        }
    condition, given, generated = resource(template, "InputBucket")["BucketName"]["Fn::If"]
    assert (condition, given) == ("HasInputBucketName", {"Ref": "InputBucketName"})
    assert template["Parameters"]["InputBucketName"]["Default"] == ""
    # <prefix>-input-<account>-<first group of the stack id's UUID>: new at every creation
    delimiter, parts = generated["Fn::Join"]
    assert delimiter == "-"
    assert parts[:3] == [{"Ref": "ResourcePrefix"}, "input", {"Ref": "AWS::AccountId"}]
    assert parts[3] == {
        "Fn::Select": [
            0,
            {
                "Fn::Split": [
                    "-",
                    {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]},
                ]
            },
        ]
    }
    for name in ("InputBucketName", "OutputBucketName", "TempBucketName"):
        expected = {"Fn::Not": [{"Fn::Equals": [{"Ref": name}, ""]}]}
        assert template["Conditions"]["Has" + name] == expected
    # S3's 63 characters: a 20-character prefix, the account (12) and 8 hex digits
    assert len("x" * 20 + "-input-" + "1" * 12 + "-" + "a" * 8) <= 63


# -- queues and state ----------------------------------------------------------------------


@pytest.mark.parametrize(("queue_name", "dlq_name", "consumer", "attributes"), QUEUES)
def test_queues_match_aws_resources(
    template: dict[str, Any],
    queue_name: str,
    dlq_name: str,
    consumer: str,
    attributes: dict[str, str],
) -> None:
    queue = resource(template, queue_name)
    for name, value in attributes.items():
        assert str(queue[name]) == value
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_name, "Arn"]},
        "maxReceiveCount": MAX_RECEIVE_COUNT,
    }
    # room for throttled receives and delayed re-queues before a healthy message dies
    assert MAX_RECEIVE_COUNT >= 5
    dlq = resource(template, dlq_name)
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert queue["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True
    # AWS advises a visibility of at least six times the consumer's timeout
    assert queue["VisibilityTimeout"] >= 6 * resource(template, consumer)["Timeout"]


def test_table_is_what_create_state_table_creates(template: dict[str, Any]) -> None:
    calls = state_table_calls()
    created, table = calls["create_table"], resource(template, "StateTable")

    def by_name(items: list[dict[str, Any]], key: str) -> dict[str, Any]:
        return {item[key]: item for item in items}

    assert table["BillingMode"] == created["BillingMode"]
    assert by_name(table["AttributeDefinitions"], "AttributeName") == by_name(
        created["AttributeDefinitions"], "AttributeName"
    )
    assert table["KeySchema"] == created["KeySchema"]
    assert by_name(table["GlobalSecondaryIndexes"], "IndexName") == by_name(
        created["GlobalSecondaryIndexes"], "IndexName"
    )
    assert table["TimeToLiveSpecification"] == calls["ttl"]["TimeToLiveSpecification"]
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}


# -- functions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "memory", "timeout"),
    [
        ("PlannerFunction", 3008, PLANNER_TIMEOUT),
        ("WorkerFunction", 3008, WORKER_TIMEOUT),
        ("CompressFunction", 1024, COMPRESS_TIMEOUT),
        ("SweepFunction", 1024, SWEEP_TIMEOUT),
    ],
)
def test_function_sizes(template: dict[str, Any], name: str, memory: int, timeout: int) -> None:
    props = function(template, name)
    assert props["Runtime"] == "python3.12"
    assert (props["MemorySize"], props["Timeout"]) == (memory, timeout)
    assert props["Architectures"] == [{"Ref": "Architecture"}]
    assert template["Parameters"]["Architecture"]["Default"] == "x86_64"
    assert template["Parameters"]["Architecture"]["AllowedValues"] == ["x86_64", "arm64"]


def test_timeouts_are_the_engine_contract() -> None:
    assert (PLANNER_TIMEOUT, WORKER_TIMEOUT, COMPRESS_TIMEOUT, SWEEP_TIMEOUT) == (900, 300, 60, 300)


@pytest.mark.parametrize(("queue_name", "dlq_name", "consumer", "attributes"), QUEUES)
def test_sqs_consumers_fit_their_queue(
    template: dict[str, Any],
    queue_name: str,
    dlq_name: str,
    consumer: str,
    attributes: dict[str, str],
) -> None:
    props = function(template, consumer)
    # Lambda refuses an SQS source whose visibility timeout is below the function's timeout
    assert resource(template, queue_name)["VisibilityTimeout"] >= props["Timeout"]
    (sqs,) = [e["Properties"] for e in props["Events"].values() if e["Type"] == "SQS"]
    assert sqs["Queue"] == {"Fn::GetAtt": [queue_name, "Arn"]}
    assert sqs["BatchSize"] == 1
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_worker_polls_no_more_than_it_may_run(template: dict[str, Any]) -> None:
    """A throttled invocation returns its message: it would count a receive towards the DLQ."""
    props = function(template, "WorkerFunction")
    reserved = {"Ref": "WorkerReservedConcurrency"}
    condition = "HasWorkerReservedConcurrency"
    # unset by default: accounts with a low concurrency limit cannot reserve any
    assert template["Parameters"]["WorkerReservedConcurrency"]["Default"] == ""
    assert template["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [reserved, ""]}]}
    assert props["ReservedConcurrentExecutions"] == {"Fn::If": [condition, reserved, NO_VALUE]}
    (sqs,) = [e["Properties"] for e in props["Events"].values() if e["Type"] == "SQS"]
    assert sqs["ScalingConfig"] == {
        "Fn::If": [condition, {"MaximumConcurrency": reserved}, NO_VALUE]
    }
    assert "DeadLetterQueue" not in props  # its queue's redrive policy is the DLQ
    env = props["Environment"]["Variables"]
    assert float(env["IMGPIPE_CREATOR_LEASE_SECONDS"]) == WORKER_TIMEOUT


@pytest.mark.parametrize(
    ("name", "dlq"),
    [("PlannerFunction", "PlanDeadLetterQueue"), ("CompressFunction", "DeadLetterQueue")],
)
def test_failed_s3_events_are_dead_lettered(template: dict[str, Any], name: str, dlq: str) -> None:
    assert function(template, name)["DeadLetterQueue"] == {
        "Type": "SQS",
        "TargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
    }
    granted = [
        s["Resource"]
        for s in statements(template, ROLES[name])
        if "sqs:SendMessage" in as_list(s["Action"])
    ]
    assert {"Fn::GetAtt": [dlq, "Arn"]} in granted


def test_sweep_runs_every_five_minutes_one_at_a_time(template: dict[str, Any]) -> None:
    props = function(template, "SweepFunction")
    (event,) = props["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == "rate(5 minutes)"
    assert props["ReservedConcurrentExecutions"] == 1
    # a run that cannot start is dropped before the next schedule, never queued behind it
    assert props["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    assert props["EventInvokeConfig"]["MaximumEventAgeInSeconds"] < 300
    env = props["Environment"]["Variables"]
    assert float(env["IMGPIPE_CREATOR_LEASE_SECONDS"]) == WORKER_TIMEOUT


def test_api_function_sizes(template: dict[str, Any]) -> None:
    props = function(template, "ApiFunction")
    assert props["Runtime"] == "python3.12"
    assert (props["MemorySize"], props["Timeout"]) == (1024, 29)
    (event,) = props["Events"].values()
    assert event == {"Type": "HttpApi", "Properties": {"ApiId": {"Ref": "HttpApi"}}}  # catch-all


@pytest.mark.parametrize("name", FUNCTIONS)
def test_handlers_resolve_to_callables(template: dict[str, Any], name: str) -> None:
    assert resource(template, name)["Handler"] == HANDLERS[name]
    module, _, attribute = resource(template, name)["Handler"].rpartition(".")
    assert callable(getattr(importlib.import_module(module), attribute))
    assert function(template, name)["CodeUri"] == "../build/lambda"  # make package's output


def test_s3_events(template: dict[str, Any]) -> None:
    s3 = {
        f"{function_name}.{name}": e["Properties"]
        for function_name in FUNCTIONS
        for name, e in resource(template, function_name).get("Events", {}).items()
        if e["Type"] == "S3"
    }
    assert set(s3) == {
        "PlannerFunction.CsvUpload",
        "PlannerFunction.CsvUploadUpperCase",
        "CompressFunction.ImageUpload",
    }
    for props in s3.values():
        assert props["Bucket"] == {"Ref": "InputBucket"}
        assert props["Events"] == "s3:ObjectCreated:*"

    def rules(name: str) -> dict[str, str]:
        found = s3[name]["Filter"]["S3Key"]["Rules"]
        return {r["Name"]: resolve(r["Value"], template) for r in found}

    assert rules("PlannerFunction.CsvUpload") == {"prefix": "csv-files/", "suffix": ".csv"}
    # S3 suffix filters are case-sensitive
    assert rules("PlannerFunction.CsvUploadUpperCase") == {"prefix": "csv-files/", "suffix": ".CSV"}
    upload_prefix = rules("CompressFunction.ImageUpload")["prefix"]
    assert rules("CompressFunction.ImageUpload") == {"prefix": "uploads/"}
    for key in ("uploads/a.jpg", "uploads/b.JPEG", "uploads/c.png", "uploads/d.webp"):
        assert is_compressible_key(key, upload_prefix)
    # the compressed copy is written outside the watched prefix: no event loop
    assert not (COMPRESSED_PREFIX + "uploads/a.jpg").startswith(upload_prefix)
    # CSVs the API stores are planned through the planning queue, not by an S3 event
    assert not "api-uploads/".startswith(rules("PlannerFunction.CsvUpload")["prefix"])
    assert not "api-uploads/".startswith(upload_prefix)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_environment_names_are_settings(template: dict[str, Any], name: str) -> None:
    env = function(template, name)["Environment"]["Variables"]
    assert not unknown_environment(set(env))  # the IMGPIPE_ names, never an original alias
    assert env["POWERTOOLS_SERVICE_NAME"] == "imgpipe"
    assert env["IMGPIPE_BACKEND"] == "aws"
    required = {"INPUT_BUCKET", "OUTPUT_BUCKET", "TEMP_BUCKET", "SQS_QUEUE_URL", "SQS_DLQ_URL"}
    required |= {"DYNAMODB_TABLE_NAME", "CSV_PREFIX"}
    assert {f"IMGPIPE_{n}" for n in required} <= set(env)
    assert env["IMGPIPE_PLAN_QUEUE_URL"] == {"Ref": "PlanQueue"}
    assert env["IMGPIPE_PLAN_DLQ_URL"] == {"Ref": "PlanDeadLetterQueue"}


# -- permissions -------------------------------------------------------------------------------


def test_every_iam_action_is_one_the_code_uses() -> None:
    for action in USED:
        assert not evidence_missing(action), action


@pytest.mark.parametrize("name", FUNCTIONS)
def test_roles_hold_exactly_what_the_code_needs(template: dict[str, Any], name: str) -> None:
    props = resource(template, name)
    assert "Policies" not in props  # SAM would add managed policies; the role says it all
    role = ROLES[name]
    assert props["Role"] == {"Fn::GetAtt": [role, "Arn"]}
    granted: set[str] = set()
    for statement in statements(template, role):
        assert statement["Effect"] == "Allow"
        actions = as_list(statement["Action"])
        assert not [a for a in actions if "*" in a]
        if set(actions) == TRACING_ACTIONS:  # X-Ray has no resource-level permissions
            assert statement["Resource"] == "*"
        else:
            assert "*" not in as_list(statement["Resource"])
        granted.update(actions)
    assert granted <= set(USED) | TRACING_ACTIONS
    assert granted == NEEDS[role]


@pytest.mark.parametrize("role", sorted(INDEXES))
def test_index_permissions_name_the_index_the_code_queries(
    template: dict[str, Any], role: str
) -> None:
    indexes = [
        r["Fn::Sub"]
        for s in statements(template, role)
        for r in as_list(s["Resource"])
        if isinstance(r, dict) and "/index/" in r.get("Fn::Sub", "")
    ]
    assert sorted(indexes) == sorted("${StateTable.Arn}/index/" + i for i in INDEXES[role])
    for s in statements(template, role):
        if any("/index/" in json.dumps(r) for r in as_list(s["Resource"])):
            assert as_list(s["Action"]) == ["dynamodb:Query"]


def test_api_launches_through_the_planning_queue_only(template: dict[str, Any]) -> None:
    """The API stores the CSV outside the CSV prefix and asks the planner; it plans nothing."""
    grants = {
        action: [resolve(r, template) for r in as_list(s["Resource"])]
        for s in statements(template, "ApiRole")
        for action in as_list(s["Action"])
        if action in ("sqs:SendMessage", "s3:PutObject")
    }
    assert grants["sqs:SendMessage"] == [{"Fn::GetAtt": ["PlanQueue", "Arn"]}]
    writes = sorted(
        r["Fn::Sub"]
        for s in statements(template, "ApiRole")
        if "s3:PutObject" in as_list(s["Action"])
        for r in as_list(s["Resource"])
    )
    assert writes == ["${InputBucket.Arn}/api-uploads/*", "${TempBucket.Arn}/processing/plans/*"]


def test_only_the_function_roles_grant_permissions(template: dict[str, Any]) -> None:
    kinds = {r["Type"] for r in template["Resources"].values()}
    assert not kinds & {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::User"}
    roles = [n for n, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"]
    assert sorted(roles) == sorted(ROLES.values())


# -- operations --------------------------------------------------------------------------------


def test_alarms_watch_errors_and_the_dead_letter_queue(template: dict[str, Any]) -> None:
    alarms = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    ]

    def watched(metric: str) -> list[Any]:
        return [
            a["Dimensions"][0]["Value"]
            for a in alarms
            if a["MetricName"] == metric
            and a["Threshold"] == 0
            and a["ComparisonOperator"] == "GreaterThanThreshold"
        ]

    for metric in ("Errors", "Throttles"):
        assert sorted(map(json.dumps, watched(metric))) == sorted(
            json.dumps({"Ref": f}) for f in FUNCTIONS
        )
    assert sorted(map(json.dumps, watched("ApproximateNumberOfMessagesVisible"))) == sorted(
        json.dumps({"Fn::GetAtt": [dlq, "QueueName"]}) for _, dlq, _, _ in QUEUES
    )
    (stuck,) = [a for a in alarms if a["MetricName"] == "StuckCreators"]
    assert stuck["Namespace"] == {"Ref": "MetricsNamespace"}
    assert {d["Name"]: d["Value"] for d in stuck["Dimensions"]} == {
        "service": "imgpipe",  # EmfMetrics' Powertools service
        "function_name": {"Ref": "SweepFunction"},
    }
    assert (stuck["Threshold"], stuck["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert (stuck["Period"], stuck["EvaluationPeriods"]) == (300, 3)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_log_to_their_own_group_with_retention(
    template: dict[str, Any], name: str
) -> None:
    props = resource(template, name)
    group_name = props["LoggingConfig"]["LogGroup"]["Ref"]
    group = resource(template, group_name)
    assert resolve(group["RetentionInDays"], template) == 30
    assert group["LogGroupName"] == {"Fn::Sub": "/aws/lambda/" + props["FunctionName"]["Fn::Sub"]}


def test_outputs_name_every_resource_an_operator_needs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    for name, ref in {
        "InputBucketName": {"Ref": "InputBucket"},
        "OutputBucketName": {"Ref": "OutputBucket"},
        "TempBucketName": {"Ref": "TempBucket"},
        "WorkQueueUrl": {"Ref": "WorkQueue"},
        "DeadLetterQueueUrl": {"Ref": "DeadLetterQueue"},
        "PlanQueueUrl": {"Ref": "PlanQueue"},
        "PlanDeadLetterQueueUrl": {"Ref": "PlanDeadLetterQueue"},
        "StateTableName": {"Ref": "StateTable"},
        "NotifyTopicArn": {"Ref": "CompletionTopic"},
    }.items():
        assert outputs[name]["Value"] == ref
    for function_name in FUNCTIONS:
        assert outputs[f"{function_name}Name"]["Value"] == {"Ref": function_name}
    for function_name in ("PlannerFunction", "WorkerFunction", "CompressFunction", "SweepFunction"):
        assert outputs[f"{function_name}Arn"]["Value"] == {"Fn::GetAtt": [function_name, "Arn"]}
    assert "${HttpApi}.execute-api" in outputs["ApiUrl"]["Value"]["Fn::Sub"]


# -- issue 11: notices, tracing, papercuts ---------------------------------------------------


def test_functions_are_traced(template: dict[str, Any]) -> None:
    assert template["Globals"]["Function"]["Tracing"] == "Active"
    for name in FUNCTIONS:
        granted = {a for s in statements(template, ROLES[name]) for a in as_list(s["Action"])}
        assert granted >= TRACING_ACTIONS, name


def test_completion_topic_is_encrypted_and_only_summary_writers_publish(
    template: dict[str, Any],
) -> None:
    topic = template["Resources"]["CompletionTopic"]
    assert topic["Type"] == "AWS::SNS::Topic"
    assert topic["Properties"]["KmsMasterKeyId"] == "alias/aws/sns"
    for name in FUNCTIONS:
        env = function(template, name)["Environment"]["Variables"]
        grants = [
            s["Resource"]
            for s in statements(template, ROLES[name])
            if "sns:Publish" in as_list(s["Action"])
        ]
        if name in NOTIFIERS:
            assert env["IMGPIPE_NOTIFY_TOPIC_ARN"] == {"Ref": "CompletionTopic"}
            assert grants == [{"Ref": "CompletionTopic"}]
        else:
            assert "IMGPIPE_NOTIFY_TOPIC_ARN" not in env and not grants


def test_readable_buckets_grant_reads_only_when_listed(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["ReadableBuckets"]
    assert (parameter["Type"], parameter["Default"]) == ("CommaDelimitedList", "")
    names = {"Ref": "ReadableBuckets"}
    assert template["Conditions"]["HasReadableBuckets"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", names]}, ""]}]
    }
    for name in FUNCTIONS:
        raw = [
            s
            for p in resource(template, ROLES[name])["Policies"]
            for s in p["PolicyDocument"]["Statement"]
            if "ReadableBuckets" in json.dumps(s)
        ]
        if name not in ("PlannerFunction", "WorkerFunction"):
            assert not raw, name
            continue
        granted = {}
        for conditional in raw:
            condition, statement, otherwise = conditional["Fn::If"]
            assert (condition, otherwise) == ("HasReadableBuckets", NO_VALUE)
            delimiter, joined = statement["Resource"]["Fn::Split"]
            assert delimiter == ","
            granted[statement["Action"]] = joined["Fn::Sub"]
        # one <bucket>/* ARN per listed name for the objects (the CSV, covers beside it),
        # one <bucket> ARN for ListBucket (a missing cover is a 404, not a 403)
        assert granted == {
            "s3:GetObject": [
                "arn:*:s3:::${Buckets}/*",
                {"Buckets": {"Fn::Join": ["/*,arn:*:s3:::", names]}},
            ],
            "s3:ListBucket": [
                "arn:*:s3:::${Buckets}",
                {"Buckets": {"Fn::Join": [",arn:*:s3:::", names]}},
            ],
        }, name
        env = function(template, name)["Environment"]["Variables"]
        assert env["IMGPIPE_READABLE_BUCKETS"] == {"Fn::Join": [",", names]}
