"""``deploy/template.yaml`` agrees with the code it deploys.

The numbers of issue 3 (lifecycle, queue, function sizes, events), the table
layout of ``create_state_table``, the queue attributes of ``aws_resources``, the
environment names ``Settings`` reads, the handler paths, and an IAM policy that
holds only actions the code performs. ``make iac-lint`` (cfn-lint, checkov)
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

from imgpipe.adapters.aws_resources import MAX_RECEIVE_COUNT, QUEUE_ATTRIBUTES
from imgpipe.adapters.dynamodb_state import BATCH_INDEX, create_state_table
from imgpipe.service.compress import COMPRESSED_PREFIX, is_compressible_key
from imgpipe.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "imgpipe"
TEMPLATE = ROOT / "deploy" / "template.yaml"
BUCKETS = ("InputBucket", "OutputBucket", "TempBucket")
FUNCTIONS = ("ProcessorFunction", "ApiFunction")
ROLES = {"ProcessorFunction": "ProcessorRole", "ApiFunction": "ApiRole"}

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
    # SqsWorkQueue.send (SendMessageBatch) for the fan-out; the Lambda service also
    # uses it for the processor's dead-letter queue (failed S3 events)
    "sqs:SendMessage": [("adapters/sqs_queue.py", "send_message_batch(")],
    # the SQS event source of the processor polls with the function's role
    "sqs:ReceiveMessage": [("entrypoints/aws_lambda.py", "EventType.SQS")],
    "sqs:DeleteMessage": [("entrypoints/aws_lambda.py", "EventType.SQS")],
    # the event source, and /readyz's queue check (SqsWorkQueue.depth)
    "sqs:GetQueueAttributes": [
        ("adapters/sqs_queue.py", "get_queue_attributes("),
        ("entrypoints/api/routes_health.py", ".queue.depth"),
    ],
    # DynamoStateStore: _get; put_creator and finish_creator's transaction Put;
    # put_batch, claim_summary and the transaction's Update; _query (table and index)
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
        ("adapters/dynamodb_state.py", "IndexName=BATCH_INDEX"),
    ],
}

# What each function's code paths need (processor: S3 events, SQS messages, direct
# invocation; API: launch, read, readiness).
NEEDS = {
    "ProcessorRole": set(USED),
    "ApiRole": set(USED) - {"s3:AbortMultipartUpload", "sqs:ReceiveMessage", "sqs:DeleteMessage"},
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


def test_input_bucket_name_is_built_the_same_everywhere(template: dict[str, Any]) -> None:
    """The processor cannot reference the bucket (circular), so the name is repeated."""
    name = resource(template, "InputBucket")["BucketName"]["Fn::Sub"]
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["INPUT_BUCKET"] == {"Fn::Sub": name}
    arns = [
        r["Fn::Sub"]
        for s in statements(template, "ProcessorRole")
        for r in as_list(s["Resource"])
        if isinstance(r, dict) and "Fn::Sub" in r and ":s3:::" in r["Fn::Sub"]
    ]
    assert arns and all(a.startswith(f"arn:${{AWS::Partition}}:s3:::{name}/") for a in arns)
    assert "InputBucket" not in json.dumps(resource(template, "ProcessorRole"))


# -- queues and state ----------------------------------------------------------------------


def test_queues_match_aws_resources(template: dict[str, Any]) -> None:
    queue = resource(template, "WorkQueue")
    for name, value in QUEUE_ATTRIBUTES.items():
        assert str(queue[name]) == value
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": MAX_RECEIVE_COUNT,
    }
    dlq = resource(template, "DeadLetterQueue")
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert queue["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True


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


def test_processor_function_sizes(template: dict[str, Any]) -> None:
    props = function(template, "ProcessorFunction")
    assert props["Runtime"] == "python3.12"
    assert (props["MemorySize"], props["Timeout"]) == (3008, 900)
    assert resolve(props["ReservedConcurrentExecutions"], template) == 50
    assert props["Architectures"] == [{"Ref": "Architecture"}]
    assert template["Parameters"]["Architecture"]["Default"] == "x86_64"
    assert template["Parameters"]["Architecture"]["AllowedValues"] == ["x86_64", "arm64"]
    # Lambda refuses an SQS source whose visibility timeout is below the function's timeout
    assert resource(template, "WorkQueue")["VisibilityTimeout"] >= props["Timeout"]
    assert props["DeadLetterQueue"] == {
        "Type": "SQS",
        "TargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
    }


def test_api_function_sizes(template: dict[str, Any]) -> None:
    props = function(template, "ApiFunction")
    assert props["Runtime"] == "python3.12"
    assert (props["MemorySize"], props["Timeout"]) == (1024, 29)
    (event,) = props["Events"].values()
    assert event == {"Type": "HttpApi", "Properties": {"ApiId": {"Ref": "HttpApi"}}}  # catch-all


@pytest.mark.parametrize("name", FUNCTIONS)
def test_handlers_resolve_to_callables(template: dict[str, Any], name: str) -> None:
    module, _, attribute = resource(template, name)["Handler"].rpartition(".")
    assert callable(getattr(importlib.import_module(module), attribute))
    assert function(template, name)["CodeUri"] == "../build/lambda"  # make package's output


def test_processor_events(template: dict[str, Any]) -> None:
    events = resource(template, "ProcessorFunction")["Events"]
    s3 = {name: e["Properties"] for name, e in events.items() if e["Type"] == "S3"}
    for props in s3.values():
        assert props["Bucket"] == {"Ref": "InputBucket"}
        assert props["Events"] == "s3:ObjectCreated:*"

    def rules(name: str) -> dict[str, str]:
        found = s3[name]["Filter"]["S3Key"]["Rules"]
        return {r["Name"]: resolve(r["Value"], template) for r in found}

    assert rules("CsvUpload") == {"prefix": "csv-files/", "suffix": ".csv"}
    upload_prefix = rules("ImageUpload")["prefix"]
    assert rules("ImageUpload") == {"prefix": "uploads/"}
    for key in ("uploads/a.jpg", "uploads/b.JPEG", "uploads/c.png", "uploads/d.webp"):
        assert is_compressible_key(key, upload_prefix)
    # the compressed copy is written outside the watched prefix: no event loop
    assert not (COMPRESSED_PREFIX + "uploads/a.jpg").startswith(upload_prefix)

    (sqs,) = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
    assert sqs["Queue"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}
    assert sqs["BatchSize"] == 1
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def _settings_names() -> set[str]:
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(c for c in alias.choices if isinstance(c, str))
        elif isinstance(alias, str):
            names.add(alias)
    return names


@pytest.mark.parametrize("name", FUNCTIONS)
def test_environment_names_are_settings(template: dict[str, Any], name: str) -> None:
    env = function(template, name)["Environment"]["Variables"]
    assert set(env) <= _settings_names()
    assert env["IMGPIPE_BACKEND"] == "aws"
    required = {"INPUT_BUCKET", "OUTPUT_BUCKET", "TEMP_BUCKET", "SQS_QUEUE_URL", "SQS_DLQ_URL"}
    assert required | {"DYNAMODB_TABLE_NAME", "IMGPIPE_CSV_PREFIX"} <= set(env)


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


def test_index_permissions_name_the_index_the_code_queries(template: dict[str, Any]) -> None:
    for role in ROLES.values():
        indexes = [
            r["Fn::Sub"]
            for s in statements(template, role)
            for r in as_list(s["Resource"])
            if isinstance(r, dict) and "/index/" in r.get("Fn::Sub", "")
        ]
        assert indexes == ["${StateTable.Arn}/index/" + BATCH_INDEX]


def test_only_the_two_roles_grant_permissions(template: dict[str, Any]) -> None:
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

    assert sorted(map(json.dumps, watched("Errors"))) == sorted(
        json.dumps({"Ref": f}) for f in FUNCTIONS
    )
    assert watched("ApproximateNumberOfMessagesVisible") == [
        {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
    ]


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
        "StateTableName": {"Ref": "StateTable"},
    }.items():
        assert outputs[name]["Value"] == ref
    assert "${HttpApi}.execute-api" in outputs["ApiUrl"]["Value"]["Fn::Sub"]
