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
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from imgpipe.adapters.aws_resources import (
    COMPRESS_TIMEOUT,
    MAX_RECEIVE_COUNT,
    PLAN_QUEUE_ATTRIBUTES,
    PLANNER_TIMEOUT,
    QUEUE_ATTRIBUTES,
    SWEEP_TIMEOUT,
    WORKER_TIMEOUT,
)
from imgpipe.adapters.dynamodb_state import BATCH_INDEX, STATUS_INDEX, create_state_table
from imgpipe.service.compress import COMPRESSED_PREFIX, is_compressible_key
from imgpipe.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "imgpipe"
TEMPLATE = ROOT / "deploy" / "template.yaml"
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

# Every IAM action the template grants, and where the code needs it (file under
# src/imgpipe, text that must be there). A permission whose evidence disappears
# from the code fails here, and so does a permission added without evidence.
USED: dict[str, list[tuple[str, str]]] = {
    # the Lambda runtime ships stdout (logs, EMF metrics documents) to the log group
    "logs:CreateLogStream": [("adapters/emf_metrics.py", "flush_metrics")],
    "logs:PutLogEvents": [("adapters/emf_metrics.py", "flush_metrics")],
    # S3ObjectStore.get / size / exists (HeadObject) / move (CopyObject source) and
    # url_for (presigned GET, signed by the API's role)
    "s3:GetObject": [
        ("adapters/s3_store.py", "get_object("),
        ("adapters/s3_store.py", "head_object("),
        ("adapters/s3_store.py", "copy_object("),
        ("adapters/s3_store.py", '"get_object"'),
    ],
    # S3ObjectStore.put (PutObject, conditional put, multipart) and move's copy target
    "s3:PutObject": [
        ("adapters/s3_store.py", "put_object("),
        ("adapters/s3_store.py", "upload_fileobj("),
    ],
    # boto3's managed transfer aborts a failed multipart upload (bodies over 8 MiB)
    "s3:AbortMultipartUpload": [("adapters/s3_store.py", "upload_fileobj(")],
    # S3ObjectStore.move deletes the archived CSV (FanOut._archive)
    "s3:DeleteObject": [
        ("adapters/s3_store.py", "delete_object("),
        ("service/fanout.py", "ARCHIVE_PROCESSED"),
    ],
    # S3ObjectStore.list (/readyz); HeadObject answers 404 rather than 403 only
    # with it, which S3ObjectStore.exists needs (skip-unchanged checks old collages)
    "s3:ListBucket": [
        ("adapters/s3_store.py", '"list_objects_v2"'),
        ("adapters/s3_store.py", "_MISSING"),
    ],
    # SqsWorkQueue.send (SendMessageBatch) for the fan-out, the sweep's re-queue and
    # the API's planning message; the Lambda service also uses it for the planner's
    # and the compression function's dead-letter queues (failed S3 events)
    "sqs:SendMessage": [("adapters/sqs_queue.py", "send_message_batch(")],
    # the SQS event sources of the planner and the worker poll with the function's role
    "sqs:ReceiveMessage": [("entrypoints/aws_lambda.py", "EventType.SQS")],
    "sqs:DeleteMessage": [("entrypoints/aws_lambda.py", "EventType.SQS")],
    # SqsWorkQueue.release: heartbeats and delayed re-queues of a live message
    "sqs:ChangeMessageVisibility": [("adapters/sqs_queue.py", "change_message_visibility(")],
    # the event source, and /readyz's queue check (SqsWorkQueue.depth)
    "sqs:GetQueueAttributes": [
        ("adapters/sqs_queue.py", "get_queue_attributes("),
        ("entrypoints/api/routes_health.py", ".queue.depth"),
    ],
    # DynamoStateStore: _get; put_creator and finish_creator's transaction Put;
    # put_batch, claim_summary and the transaction's Update; _query (table and indexes).
    # TransactWriteItems is no IAM action: each Put and Update of a transaction is
    # authorised as PutItem and UpdateItem.
    "dynamodb:GetItem": [("adapters/dynamodb_state.py", "get_item(")],
    "dynamodb:PutItem": [
        ("adapters/dynamodb_state.py", "put_item("),
        ("adapters/dynamodb_state.py", '{"Put":'),
    ],
    "dynamodb:UpdateItem": [
        ("adapters/dynamodb_state.py", "update_item("),
        ("adapters/dynamodb_state.py", '"Update":'),
    ],
    "dynamodb:Query": [
        ("adapters/dynamodb_state.py", 'get_paginator("query")'),
        ("adapters/dynamodb_state.py", '"IndexName": BATCH_INDEX'),
        ("adapters/dynamodb_state.py", "IndexName=STATUS_INDEX"),
    ],
    # put_creators: a plan's pending records, 25 at a time
    "dynamodb:BatchWriteItem": [("adapters/dynamodb_state.py", "batch_write_item(")],
}

_LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}
_CONSUME = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
_SUMMARY = {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListBucket"}

# What each function's code paths need: exactly these actions, no more, no fewer.
NEEDS = {
    # read the CSV, write plans and checkpoints, archive the CSV, write state, fan
    # out, consume (and heartbeat) the planning queue, dead-letter failed S3 events
    "PlannerRole": _LOGS
    | {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
    | {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
    | {"dynamodb:BatchWriteItem", "dynamodb:Query"}
    | {"sqs:SendMessage", "sqs:ChangeMessageVisibility"}
    | _CONSUME,
    # read covers and plans, write collages and summaries, claim/finish creators,
    # consume (heartbeat, delay) the work queue
    "WorkerRole": _LOGS
    | _SUMMARY
    | {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"}
    | {"sqs:ChangeMessageVisibility"}
    | _CONSUME,
    # read the upload, write its compressed copy, dead-letter failed S3 events
    "CompressRole": _LOGS | {"s3:GetObject", "s3:PutObject", "sqs:SendMessage"},
    # find stuck creators, re-queue them, finish batches (the worker's summary writes)
    "SweepRole": _LOGS
    | _SUMMARY
    | {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"}
    | {"sqs:SendMessage"},
    # store the CSV, reserve the batch id, send the planning message; read state,
    # collages and summaries; readiness
    "ApiRole": _LOGS
    | {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}
    | {"sqs:SendMessage", "sqs:GetQueueAttributes", "dynamodb:GetItem", "dynamodb:Query"},
}
# The indexes each role may query (besides the table).
INDEXES = {
    "PlannerRole": [],
    "WorkerRole": [BATCH_INDEX, STATUS_INDEX],
    "CompressRole": [],
    "SweepRole": [BATCH_INDEX, STATUS_INDEX],
    "ApiRole": [BATCH_INDEX],
}


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms: ``!Ref x`` -> ``{"Ref": "x"}``."""


def _intrinsic(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix if suffix == "Ref" else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)
    return loaded


def resolve(value: Any, template: dict[str, Any]) -> Any:
    """Parameters replaced by their defaults (``!Ref`` and ``${Name}`` in ``!Sub``)."""
    defaults = {k: v.get("Default") for k, v in template["Parameters"].items()}
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in defaults:
        return defaults[value["Ref"]]
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return re.sub(
            r"\$\{([^}]+)\}",
            lambda m: str(defaults.get(m.group(1), m.group(0))),
            value["Fn::Sub"],
        )
    return value


def resource(template: dict[str, Any], name: str) -> dict[str, Any]:
    props: dict[str, Any] = template["Resources"][name]["Properties"]
    return props


def function(template: dict[str, Any], name: str) -> dict[str, Any]:
    """Function properties with SAM's Globals merged in (environment maps merge)."""
    props = {**template["Globals"]["Function"], **resource(template, name)}
    env = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    env.update(resource(template, name).get("Environment", {}).get("Variables", {}))
    props["Environment"] = {"Variables": env}
    return props


def statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    policies = resource(template, role)["Policies"]
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


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


@pytest.mark.parametrize("function_name", [*NOTIFIED, "WorkerFunction"])
def test_input_bucket_name_is_built_the_same_everywhere(
    template: dict[str, Any], function_name: str
) -> None:
    """The notified functions cannot reference the bucket (circular): the name is repeated.

    The worker is not notified, but reads covers from the same bucket the same way.
    """
    name = resource(template, "InputBucket")["BucketName"]["Fn::Sub"]
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["IMGPIPE_INPUT_BUCKET"] == {"Fn::Sub": name}
    role = ROLES[function_name]
    arns = [
        r["Fn::Sub"]
        for s in statements(template, role)
        for r in as_list(s["Resource"])
        if isinstance(r, dict) and "Fn::Sub" in r and ":s3:::" in r["Fn::Sub"]
    ]
    assert arns and all(a.startswith(f"arn:${{AWS::Partition}}:s3:::{name}/") for a in arns)
    assert "InputBucket" not in json.dumps(resource(template, role))


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
    calls: dict[str, dict[str, Any]] = {}
    client = SimpleNamespace(
        create_table=lambda **kw: calls.setdefault("create_table", kw),
        update_time_to_live=lambda **kw: calls.setdefault("ttl", kw),
        get_waiter=lambda name: SimpleNamespace(wait=lambda **kw: None),
    )
    create_state_table(client, "t")
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
    reserved = props["ReservedConcurrentExecutions"]
    assert reserved == {"Ref": "WorkerReservedConcurrency"}
    assert resolve(reserved, template) == 50
    (sqs,) = [e["Properties"] for e in props["Events"].values() if e["Type"] == "SQS"]
    assert sqs["ScalingConfig"] == {"MaximumConcurrency": reserved}
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


HANDLERS = {
    "PlannerFunction": "imgpipe.entrypoints.aws_lambda.planner_handler",
    "WorkerFunction": "imgpipe.entrypoints.aws_lambda.worker_handler",
    "CompressFunction": "imgpipe.entrypoints.aws_lambda.compress_handler",
    "SweepFunction": "imgpipe.entrypoints.aws_lambda.sweep_handler",
    "ApiFunction": "imgpipe.entrypoints.api_lambda.handler",
}


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
    assert set(s3) == {"PlannerFunction.CsvUpload", "CompressFunction.ImageUpload"}
    for props in s3.values():
        assert props["Bucket"] == {"Ref": "InputBucket"}
        assert props["Events"] == "s3:ObjectCreated:*"

    def rules(name: str) -> dict[str, str]:
        found = s3[name]["Filter"]["S3Key"]["Rules"]
        return {r["Name"]: resolve(r["Value"], template) for r in found}

    assert rules("PlannerFunction.CsvUpload") == {"prefix": "csv-files/", "suffix": ".csv"}
    upload_prefix = rules("CompressFunction.ImageUpload")["prefix"]
    assert rules("CompressFunction.ImageUpload") == {"prefix": "uploads/"}
    for key in ("uploads/a.jpg", "uploads/b.JPEG", "uploads/c.png", "uploads/d.webp"):
        assert is_compressible_key(key, upload_prefix)
    # the compressed copy is written outside the watched prefix: no event loop
    assert not (COMPRESSED_PREFIX + "uploads/a.jpg").startswith(upload_prefix)
    # CSVs the API stores are planned through the planning queue, not by an S3 event
    assert not "api-uploads/".startswith(rules("PlannerFunction.CsvUpload")["prefix"])
    assert not "api-uploads/".startswith(upload_prefix)


def _settings_names() -> set[str]:
    """Each setting's own name: the first of its aliases, the ``IMGPIPE_*`` one."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.add(str(alias.choices[0]))
        elif isinstance(alias, str):
            names.add(alias)
    return names


@pytest.mark.parametrize("name", FUNCTIONS)
def test_environment_names_are_settings(template: dict[str, Any], name: str) -> None:
    env = function(template, name)["Environment"]["Variables"]
    assert set(env) <= _settings_names()  # the IMGPIPE_ names, never an original alias
    assert env["IMGPIPE_BACKEND"] == "aws"
    required = {"INPUT_BUCKET", "OUTPUT_BUCKET", "TEMP_BUCKET", "SQS_QUEUE_URL", "SQS_DLQ_URL"}
    required |= {"DYNAMODB_TABLE_NAME", "CSV_PREFIX"}
    assert {f"IMGPIPE_{n}" for n in required} <= set(env)
    assert env["IMGPIPE_PLAN_QUEUE_URL"] == {"Ref": "PlanQueue"}
    assert env["IMGPIPE_PLAN_DLQ_URL"] == {"Ref": "PlanDeadLetterQueue"}


# -- permissions -------------------------------------------------------------------------------


def test_every_iam_action_is_one_the_code_uses() -> None:
    for action, evidence in USED.items():
        for path, text in evidence:
            assert text in (SRC / path).read_text(encoding="utf-8"), f"{action}: {path} {text}"


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
        assert "*" not in as_list(statement["Resource"])
        granted.update(actions)
    assert granted <= set(USED)
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
    }.items():
        assert outputs[name]["Value"] == ref
    for function_name in FUNCTIONS:
        assert outputs[f"{function_name}Name"]["Value"] == {"Ref": function_name}
    for function_name in ("PlannerFunction", "WorkerFunction", "CompressFunction", "SweepFunction"):
        assert outputs[f"{function_name}Arn"]["Value"] == {"Fn::GetAtt": [function_name, "Arn"]}
    assert "${HttpApi}.execute-api" in outputs["ApiUrl"]["Value"]["Fn::Sub"]
