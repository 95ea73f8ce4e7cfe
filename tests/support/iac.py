"""What the deploy descriptions must agree on, read from the code, and readers for both.

``deploy/template.yaml`` (SAM) and ``deploy/terraform`` describe the same stack; the
tests in ``tests/integration/test_template.py``, ``test_terraform.py`` and
``test_dashboards.py`` hold each against the code and against the other. The facts
come from the code wherever the code states them: settings names from ``Settings``,
metric names from the calls that emit them, the table from ``create_state_table``.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import hcl2
import yaml
from pydantic import AliasChoices

from imgpipe.adapters.dynamodb_table import (
    BATCH_INDEX,
    OPEN_BATCH_INDEX,
    STATUS_INDEX,
    create_state_table,
)
from imgpipe.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "imgpipe"
TEMPLATE = ROOT / "deploy" / "template.yaml"
TERRAFORM = ROOT / "deploy" / "terraform"

# SAM logical id -> Terraform name, for the four functions both describe (the HTTP API
# is SAM's only).
FUNCTIONS_TF = {
    "PlannerFunction": "planner",
    "WorkerFunction": "worker",
    "CompressFunction": "compress",
    "SweepFunction": "sweep",
}
HANDLERS = {
    "PlannerFunction": "imgpipe.entrypoints.aws_lambda.planner_handler",
    "WorkerFunction": "imgpipe.entrypoints.aws_lambda.worker_handler",
    "CompressFunction": "imgpipe.entrypoints.aws_lambda.compress_handler",
    "SweepFunction": "imgpipe.entrypoints.aws_lambda.sweep_handler",
    "ApiFunction": "imgpipe.entrypoints.api_lambda.handler",
}

# Names read by the libraries the functions run, not by Settings.
LIBRARY_ENVIRONMENT = {"POWERTOOLS_SERVICE_NAME"}

# Every IAM action the deploy descriptions grant, and where the code needs it (file
# under src/imgpipe, text that must be there). A permission whose evidence disappears
# from the code fails, and so does a permission added without evidence.
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
    # S3ObjectStore.move deletes the archived CSV (FanOut._archive, from finalize: the
    # planner, the worker or the sweep, whoever finishes the batch)
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
        ("adapters/dynamodb_pages.py", "client.update_item("),
        ("adapters/dynamodb_state.py", '"Update":'),
    ],
    "dynamodb:Query": [
        ("adapters/dynamodb_state.py", 'get_paginator("query")'),
        ("adapters/dynamodb_state.py", '"IndexName": BATCH_INDEX'),
        ("adapters/dynamodb_state.py", "IndexName=STATUS_INDEX"),
        ("adapters/dynamodb_pages.py", "client.query("),
        ("adapters/dynamodb_pages.py", "IndexName=OPEN_BATCH_INDEX"),
    ],
    # put_creators: a plan's pending records, 25 at a time
    "dynamodb:BatchWriteItem": [("adapters/dynamodb_state.py", "batch_write_item(")],
    # SnsNotifier.send: the completion notice, published with the summary to the topic
    # IMGPIPE_NOTIFY_TOPIC_ARN names
    "sns:Publish": [
        ("adapters/sns_notifier.py", "self.client.publish("),
        ("settings.py", "IMGPIPE_NOTIFY_TOPIC_ARN"),
    ],
}
# Granted because tracing is Active: the Lambda runtime sends the trace segments with
# the function's role. X-Ray has no resource-level permissions ("*" is the only form).
TRACING_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}

_LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"} | TRACING_ACTIONS
_CONSUME = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
_SUMMARY = {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListBucket"}
# finalize archives a CSV planned from the CSV prefix (copy, then delete)
_ARCHIVE = {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
_CLAIMS = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"}

# What each function's code paths need: exactly these actions, no more, no fewer.
# The planner, the worker and the sweep may each be the one that finishes a batch
# (service/fanout.py finalize: an empty batch at planning time, the last creator, a
# batch whose last worker died), so each writes the summary, archives the CSV and
# sends the completion notice.
NEEDS = {
    # read the CSV, write plans and checkpoints, archive the CSV, write state, fan
    # out, consume (and heartbeat) the planning queue, dead-letter failed S3 events
    "PlannerRole": _LOGS
    | _SUMMARY
    | _ARCHIVE
    | _CLAIMS
    | {"dynamodb:BatchWriteItem", "sqs:SendMessage", "sqs:ChangeMessageVisibility"}
    | _CONSUME
    | {"sns:Publish"},
    # read covers and plans, write collages and summaries, claim/finish creators,
    # consume (heartbeat, delay) the work queue
    "WorkerRole": _LOGS
    | _SUMMARY
    | _ARCHIVE
    | _CLAIMS
    | {"sqs:ChangeMessageVisibility"}
    | _CONSUME
    | {"sns:Publish"},
    # read the upload, write its compressed copy, dead-letter failed S3 events
    "CompressRole": _LOGS | {"s3:GetObject", "s3:PutObject", "sqs:SendMessage"},
    # find stuck creators, re-queue them, finish batches (the worker's summary writes)
    "SweepRole": _LOGS | _SUMMARY | _ARCHIVE | _CLAIMS | {"sqs:SendMessage", "sns:Publish"},
    # store the CSV, reserve the batch id, send the planning message; read state,
    # collages and summaries; readiness
    "ApiRole": _LOGS
    | {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}
    | {"sqs:SendMessage", "sqs:GetQueueAttributes", "dynamodb:GetItem", "dynamodb:Query"},
}
# The indexes each role may query (besides the table).
INDEXES = {
    "PlannerRole": [BATCH_INDEX],
    "WorkerRole": [BATCH_INDEX, STATUS_INDEX],
    "CompressRole": [],
    "SweepRole": [BATCH_INDEX, STATUS_INDEX, OPEN_BATCH_INDEX],
    "ApiRole": [BATCH_INDEX],
}
# The functions that may write a batch summary, hence send the completion notice.
NOTIFIERS = ("PlannerFunction", "WorkerFunction", "SweepFunction")


def state_table_calls() -> dict[str, dict[str, Any]]:
    """What ``create_state_table`` asks DynamoDB for: ``create_table`` and ``ttl`` keywords."""
    calls: dict[str, dict[str, Any]] = {}
    client = SimpleNamespace(
        create_table=lambda **kw: calls.setdefault("create_table", kw),
        update_time_to_live=lambda **kw: calls.setdefault("ttl", kw),
        get_waiter=lambda name: SimpleNamespace(wait=lambda **kw: None),
    )
    create_state_table(client, "t")
    return calls


def evidence_missing(action: str) -> list[str]:
    """The evidence of ``action`` that is not in the code (empty when all of it is)."""
    return [
        f"{path}: {text}"
        for path, text in USED[action]
        if text not in (SRC / path).read_text(encoding="utf-8")
    ]


def settings_names() -> set[str]:
    """Each setting's own name: the first of its aliases, the ``IMGPIPE_*`` one."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.add(str(alias.choices[0]))
        elif isinstance(alias, str):
            names.add(alias)
    return names


def unknown_environment(names: set[str]) -> set[str]:
    """Names that are neither a setting nor read by a library the functions run."""
    return names - settings_names() - LIBRARY_ENVIRONMENT


# -- what the code emits -------------------------------------------------------------------


def emitted_metrics() -> dict[str, str]:
    """EMF metric name -> the handler function that emits it, read from the code.

    Every ``metrics.observe("Name", ...)`` / ``metrics.incr("Name", ...)`` call with a
    literal name in the Lambda entry point and the record kinds it serves, attributed to
    the top-level function it is in (``sweep_handler``; ``_emit`` runs in the worker's
    per-creator path).
    """
    found: dict[str, str] = {}
    for module in ("aws_lambda.py", "lambda_records.py"):
        tree = ast.parse((SRC / "entrypoints" / module).read_text(encoding="utf-8"))
        _emitted_in(tree, found)
    return found


def _emitted_in(tree: ast.Module, found: dict[str, str]) -> None:
    for top in tree.body:
        if not isinstance(top, ast.FunctionDef):
            continue
        for node in ast.walk(top):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("observe", "incr")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found[node.args[0].value] = top.name


def emf_dimensions() -> set[str]:
    """The dimension names EmfMetrics adds: Powertools' ``service`` and its own."""
    tree = ast.parse((SRC / "adapters" / "emf_metrics.py").read_text(encoding="utf-8"))
    names = {"service"}  # Powertools' Metrics(service=...) is a default dimension
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_dimension":
            for keyword in node.keywords:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    names.add(str(keyword.value.value))
    return names


def emf_service() -> str:
    """EmfMetrics' default Powertools service (the ``service`` dimension's value)."""
    import inspect

    from imgpipe.adapters.emf_metrics import EmfMetrics

    return str(inspect.signature(EmfMetrics).parameters["service"].default)


# -- the SAM template ------------------------------------------------------------------------


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms: ``!Ref x`` -> ``{"Ref": "x"}``."""


def _intrinsic(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
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


CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)
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
    """The role's statements; a conditional one (``!If [c, s, NoValue]``) as if c held."""
    policies = resource(template, role)["Policies"]
    found = []
    for policy in policies:
        for statement in policy["PolicyDocument"]["Statement"]:
            if set(statement) == {"Fn::If"}:
                _, statement, otherwise = statement["Fn::If"]
                assert otherwise == {"Ref": "AWS::NoValue"}
            found.append(statement)
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# -- the Terraform module --------------------------------------------------------------------

_META = {"__is_block__", "__comments__", "__inline_comments__", "__start_line__", "__end_line__"}


def _unquote(value: Any) -> Any:
    """python-hcl2 8 keeps a string literal's quotes (``'"S"'``); 7 drops them."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if k not in _META}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    return value


def load_terraform() -> dict[str, Any]:
    """Every ``.tf`` file of the module merged: ``{"resource": {type: {name: body}}, ...}``.

    Blocks that repeat (``statement``, ``rule``) stay lists; a block that appears once
    is a one-element list, as python-hcl2 gives it.
    """
    merged: dict[str, Any] = {
        "resource": {},
        "data": {},
        "variable": {},
        "locals": {},
        "output": {},
        "terraform": [],
    }
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            parsed = _unquote(hcl2.load(handle))
        for kind in ("resource", "data"):
            for block in parsed.get(kind, []):
                for type_name, named in block.items():
                    for name, body in named.items():
                        target = merged[kind].setdefault(type_name, {})
                        assert name not in target, f"{type_name}.{name} twice ({path.name})"
                        target[name] = body
        for block in parsed.get("variable", []):
            merged["variable"].update(block)
        for block in parsed.get("locals", []):
            merged["locals"].update(block)
        for block in parsed.get("output", []):
            merged["output"].update(block)
        merged["terraform"].extend(parsed.get("terraform", []))
    return merged


def tf_value(expression: Any, module: dict[str, Any]) -> Any:
    """A literal, ``${local.x}`` / ``${var.x}`` (their value, a variable's default), or
    a product of those (``${6 * local.worker_timeout}``); else unchanged."""
    if not isinstance(expression, str):
        return expression
    whole = re.fullmatch(r"\$\{(.*)\}", expression, re.S)
    if whole is None:
        return expression
    inner = whole.group(1).strip()

    def lookup(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2)
        value = (
            module["locals"][name] if kind == "local" else module["variable"][name].get("default")
        )
        return repr(tf_value(value, module))

    substituted = re.sub(r"\b(local|var)\.(\w+)\b", lookup, inner)
    if re.fullmatch(r"\d+(\s*\*\s*\d+)+", substituted):
        return math.prod(int(factor) for factor in substituted.split("*"))
    if re.fullmatch(r"'[^']*'|\"[^\"]*\"|None|\d+", substituted):
        return ast.literal_eval(substituted)
    return expression


def tf_environment_names(expression: str, module: dict[str, Any]) -> set[str]:
    """The variable names of a function's ``environment.variables`` expression: the keys
    of the locals it merges and of the inline maps."""
    names: set[str] = set()
    for local in re.findall(r"\blocal\.(\w+)\b", expression):
        value = module["locals"][local]
        if isinstance(value, dict):  # a merged map, not a value (tostring(local.x))
            names.update(value)
    names.update(re.findall(r"\b([A-Z][A-Z0-9_]+)\s*=", expression))
    return names


def tf_statements(module: dict[str, Any], function_name: str) -> list[dict[str, Any]]:
    """The role policy of one function: its own statements and the runtime document's."""
    documents = module["data"]["aws_iam_policy_document"]
    own = documents[function_name]
    found = list(own.get("statement", []))
    for source in own.get("source_policy_documents", []):
        match = re.fullmatch(r'\$\{data\.aws_iam_policy_document\.(\w+)\["(\w+)"\]\.json\}', source)
        assert match, source
        assert match.group(2) == function_name, source
        found.extend(documents[match.group(1)]["statement"])
    for dynamic in own.get("dynamic", []):
        found.extend(dynamic["statement"]["content"])
    return found
