"""``deploy/terraform`` agrees with the code and with the SAM template.

Proved offline (the providers cannot be downloaded): python-hcl2 parses every file,
``make iac-lint`` runs checkov's terraform checks, and this cross-checks the meaning:
the table of ``create_state_table``, the queues of ``aws_resources``, handler paths
that import, environment names that ``Settings`` reads, and IAM actions that the code
performs, each the same as the SAM template's. The table's name is the module's own
(SAM keeps its generated one).
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any

import pytest

from imgpipe.adapters.aws_resources import (
    MAX_RECEIVE_COUNT,
    PLAN_QUEUE_ATTRIBUTES,
    QUEUE_ATTRIBUTES,
)
from imgpipe.adapters.dynamodb_table import BATCH_INDEX, OPEN_BATCH_INDEX, STATUS_INDEX
from imgpipe.settings import Settings
from tests.support.iac import (
    FUNCTIONS_TF,
    HANDLERS,
    NEEDS,
    NOTIFIERS,
    TERRAFORM,
    TRACING_ACTIONS,
    USED,
    as_list,
    function,
    load_template,
    load_terraform,
    resolve,
    resource,
    state_table_calls,
    statements,
    tf_environment_names,
    tf_statements,
    tf_value,
    unknown_environment,
)

# (terraform queue, its dead-letter queue, consumer, SAM queue, attributes in aws_resources)
QUEUES = (
    ("work", "work_dlq", "worker", "WorkQueue", QUEUE_ATTRIBUTES),
    ("plan", "plan_dlq", "planner", "PlanQueue", PLAN_QUEUE_ATTRIBUTES),
)


@pytest.fixture(scope="module")
def module() -> dict[str, Any]:
    return load_terraform()


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def resources(module: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = module["resource"][kind]
    return found


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """A block that appears once (python-hcl2 gives a one-element list)."""
    (found,) = body[name]
    assert isinstance(found, dict)
    return found


def test_module_pins_terraform_and_the_aws_provider(module: dict[str, Any]) -> None:
    (settings,) = module["terraform"]
    assert settings["required_version"] == ">= 1.5"
    (providers,) = settings["required_providers"]
    assert providers["aws"] == {"source": "hashicorp/aws", "version": "~> 5.0"}


def test_every_checkov_skip_gives_a_reason() -> None:
    skips = [
        (path.name, m.group(1), m.group(2))
        for path in sorted(TERRAFORM.glob("*.tf"))
        for m in re.finditer(r"#checkov:skip=([A-Z0-9_]+)(?::(.*))?", path.read_text())
    ]
    assert skips
    for name, check, reason in skips:
        assert reason and len(reason.split()) >= 5, f"{name}: {check} has no reason"


# -- storage ---------------------------------------------------------------------------


@pytest.mark.parametrize("bucket", ["input", "output", "temp"])
def test_buckets_are_generated_private_encrypted_and_tls_only(
    module: dict[str, Any], bucket: str
) -> None:
    body = resources(module, "aws_s3_bucket")[bucket]
    variable = f"{bucket}_bucket_name"
    assert body["bucket"] == f"${{var.{variable}}}"
    assert module["variable"][variable]["default"] is None  # generated unless given
    assert body["bucket_prefix"] == (
        f'${{var.{variable} == null ? "${{var.resource_prefix}}-{bucket}-" : null}}'
    )
    assert module["locals"]["buckets"][bucket] == f"${{aws_s3_bucket.{bucket}}}"
    # the per-bucket settings cover every bucket of local.buckets
    for kind in (
        "aws_s3_bucket_ownership_controls",
        "aws_s3_bucket_public_access_block",
        "aws_s3_bucket_server_side_encryption_configuration",
        "aws_s3_bucket_policy",
    ):
        (body,) = resources(module, kind).values()
        assert body["for_each"] == "${local.buckets}", kind
    block_public = resources(module, "aws_s3_bucket_public_access_block")["all"]
    assert [
        block_public[k] for k in sorted(block_public) if k.endswith(("acls", "policy", "buckets"))
    ] == [True] * 4
    sse = block(
        resources(module, "aws_s3_bucket_server_side_encryption_configuration")["all"], "rule"
    )
    assert block(sse, "apply_server_side_encryption_by_default")["sse_algorithm"] == "AES256"
    (tls,) = module["data"]["aws_iam_policy_document"]["tls_only"]["statement"]
    assert (tls["effect"], tls["actions"]) == ("Deny", ["s3:*"])
    assert tls["resources"] == ["${each.value.arn}", "${each.value.arn}/*"]
    assert block(tls, "condition") == {
        "test": "Bool",
        "variable": "aws:SecureTransport",
        "values": ["false"],
    }


def _tf_rules(module: dict[str, Any], bucket: str) -> dict[str, dict[str, Any]]:
    """Lifecycle rules by id, in the SAM template's terms (prefix, days, classes)."""
    body = resources(module, "aws_s3_bucket_lifecycle_configuration")[bucket]
    found: dict[str, dict[str, Any]] = {}
    expanded = list(body.get("rule", []))
    for dynamic in body.get("dynamic", []):
        rule = dynamic["rule"]
        (content,) = rule["content"]
        for key, prefix in rule["for_each"].items():
            text = json.dumps(content).replace("${rule.key}", key)
            expanded.append(json.loads(text.replace("${rule.value}", prefix)))
    for rule in expanded:
        filters = rule.get("filter", [{}])
        entry: dict[str, Any] = {"Status": rule["status"]}
        prefix = filters[0].get("prefix") if filters else None
        if prefix:
            entry["Prefix"] = tf_value(prefix, module)
        if "transition" in rule:
            entry["Transitions"] = [(t["storage_class"], t["days"]) for t in rule["transition"]]
        for expiration in rule.get("expiration", []):
            if "days" in expiration:
                entry["ExpirationInDays"] = expiration["days"]
            if "expired_object_delete_marker" in expiration:
                entry["ExpiredObjectDeleteMarker"] = expiration["expired_object_delete_marker"]
        for noncurrent in rule.get("noncurrent_version_expiration", []):
            entry["NoncurrentDays"] = noncurrent["noncurrent_days"]
        for abort in rule.get("abort_incomplete_multipart_upload", []):
            entry["AbortDays"] = abort["days_after_initiation"]
        found[rule["id"]] = entry
    return found


def _sam_rules(template: dict[str, Any], bucket: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for rule in resource(template, bucket)["LifecycleConfiguration"]["Rules"]:
        entry: dict[str, Any] = {"Status": rule["Status"]}
        if "Prefix" in rule:
            entry["Prefix"] = resolve(rule["Prefix"], template)
        if "Transitions" in rule:
            entry["Transitions"] = [
                (t["StorageClass"], t["TransitionInDays"]) for t in rule["Transitions"]
            ]
        for key in ("ExpirationInDays", "ExpiredObjectDeleteMarker"):
            if key in rule:
                entry[key] = rule[key]
        if "NoncurrentVersionExpiration" in rule:
            entry["NoncurrentDays"] = rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
        if "AbortIncompleteMultipartUpload" in rule:
            abort = rule["AbortIncompleteMultipartUpload"]
            entry["AbortDays"] = abort["DaysAfterInitiation"]
        found[rule["Id"]] = entry
    return found


@pytest.mark.parametrize(
    ("bucket", "sam"),
    [("input", "InputBucket"), ("output", "OutputBucket"), ("temp", "TempBucket")],
)
def test_lifecycle_rules_are_the_templates(
    module: dict[str, Any], template: dict[str, Any], bucket: str, sam: str
) -> None:
    rules = _tf_rules(module, bucket)
    assert rules == _sam_rules(template, sam)
    if bucket == "input":
        assert rules["csv-files-tiering"]["Prefix"] == Settings.model_fields["csv_prefix"].default


def test_csv_uploads_of_either_case_and_images_notify_their_function(
    module: dict[str, Any],
) -> None:
    notification = resources(module, "aws_s3_bucket_notification")["input"]
    assert notification["bucket"] == "${aws_s3_bucket.input.id}"
    targets = {
        (n["lambda_function_arn"], n.get("filter_prefix"), n.get("filter_suffix"))
        for n in notification["lambda_function"]
    }
    assert targets == {
        ("${aws_lambda_function.planner.arn}", "${var.csv_prefix}", ".csv"),
        ("${aws_lambda_function.planner.arn}", "${var.csv_prefix}", ".CSV"),
        ("${aws_lambda_function.compress.arn}", "${var.compress_prefix}", None),
    }
    for n in notification["lambda_function"]:
        assert n["events"] == ["s3:ObjectCreated:*"]
    assert tf_value("${var.compress_prefix}", module) == (
        Settings.model_fields["compress_prefix"].default
    )
    permissions = resources(module, "aws_lambda_permission")
    for name, function_name in (("planner_s3", "planner"), ("compress_s3", "compress")):
        permission = permissions[name]
        assert permission["principal"] == "s3.amazonaws.com"
        assert (
            permission["function_name"] == f"${{aws_lambda_function.{function_name}.function_name}}"
        )
        assert permission["source_arn"] == "${aws_s3_bucket.input.arn}"
        assert f"${{aws_lambda_permission.{name}}}" in notification["depends_on"]


# -- queues and state ------------------------------------------------------------------


@pytest.mark.parametrize(("queue", "dlq", "consumer", "sam_queue", "attributes"), QUEUES)
def test_queues_match_aws_resources_and_the_template(
    module: dict[str, Any],
    template: dict[str, Any],
    queue: str,
    dlq: str,
    consumer: str,
    sam_queue: str,
    attributes: dict[str, str],
) -> None:
    queues = resources(module, "aws_sqs_queue")
    body = queues[queue]
    assert (
        str(tf_value(body["visibility_timeout_seconds"], module)) == attributes["VisibilityTimeout"]
    )
    assert (
        str(tf_value(body["message_retention_seconds"], module))
        == (attributes["MessageRetentionPeriod"])
    )
    assert str(body["receive_wait_time_seconds"]) == attributes["ReceiveMessageWaitTimeSeconds"]
    assert body["sqs_managed_sse_enabled"] is True and queues[dlq]["sqs_managed_sse_enabled"]
    assert tf_value(queues[dlq]["message_retention_seconds"], module) == 14 * 24 * 3600
    redrive = body["redrive_policy"]
    assert f"deadLetterTargetArn = aws_sqs_queue.{dlq}.arn" in redrive
    assert "maxReceiveCount = local.max_receive_count" in redrive
    assert module["locals"]["max_receive_count"] == MAX_RECEIVE_COUNT
    # the same as the SAM queue
    sam = resource(template, sam_queue)
    assert tf_value(body["visibility_timeout_seconds"], module) == sam["VisibilityTimeout"]
    timeout = tf_value(resources(module, "aws_lambda_function")[consumer]["timeout"], module)
    assert tf_value(body["visibility_timeout_seconds"], module) >= 6 * timeout


def test_table_is_what_create_state_table_creates(
    module: dict[str, Any], template: dict[str, Any]
) -> None:
    calls = state_table_calls()
    created = calls["create_table"]
    table = resources(module, "aws_dynamodb_table")["state"]
    assert table["name"] == "${var.table_name}"
    assert module["variable"]["table_name"]["default"] == "tiktok-creator-processing-state"
    assert table["billing_mode"] == created["BillingMode"]
    keys = {k["KeyType"]: k["AttributeName"] for k in created["KeySchema"]}
    assert (table["hash_key"], table["range_key"]) == (keys["HASH"], keys["RANGE"])
    assert {a["name"]: a["type"] for a in table["attribute"]} == {
        a["AttributeName"]: a["AttributeType"] for a in created["AttributeDefinitions"]
    }
    indexes = {
        i["name"]: (i["hash_key"], i["range_key"], i["projection_type"])
        for i in table["global_secondary_index"]
    }

    def key_of(index: dict[str, Any], kind: str) -> str:
        return next(k["AttributeName"] for k in index["KeySchema"] if k["KeyType"] == kind)

    for source in (
        created["GlobalSecondaryIndexes"],
        resource(template, "StateTable")["GlobalSecondaryIndexes"],
    ):
        assert indexes == {
            i["IndexName"]: (
                key_of(i, "HASH"),
                key_of(i, "RANGE"),
                i["Projection"]["ProjectionType"],
            )
            for i in source
        }
    assert set(indexes) == {BATCH_INDEX, STATUS_INDEX, OPEN_BATCH_INDEX}
    ttl = calls["ttl"]["TimeToLiveSpecification"]
    assert block(table, "ttl") == {
        "attribute_name": ttl["AttributeName"],
        "enabled": ttl["Enabled"],
    }
    assert block(table, "point_in_time_recovery") == {"enabled": True}
    assert block(table, "server_side_encryption") == {"enabled": True}


# -- functions -------------------------------------------------------------------------


@pytest.mark.parametrize(("sam_name", "name"), sorted(FUNCTIONS_TF.items()))
def test_functions_match_the_template(
    module: dict[str, Any], template: dict[str, Any], sam_name: str, name: str
) -> None:
    body = resources(module, "aws_lambda_function")[name]
    sam = function(template, sam_name)
    assert body["handler"] == sam["Handler"] == HANDLERS[sam_name]
    module_name, _, attribute = body["handler"].rpartition(".")
    assert callable(getattr(importlib.import_module(module_name), attribute))
    assert body["runtime"] == sam["Runtime"]
    assert (body["memory_size"], tf_value(body["timeout"], module)) == (
        sam["MemorySize"],
        sam["Timeout"],
    )
    assert body["architectures"] == ["${var.architecture}"]
    assert module["variable"]["architecture"]["default"] == "x86_64"
    assert body["filename"] == "${var.lambda_zip}"
    assert module["variable"]["lambda_zip"]["default"].endswith("build/imgpipe-lambda.zip")
    assert body["role"] == f'${{aws_iam_role.function["{name}"].arn}}'
    assert block(body, "tracing_config") == {"mode": "Active"}
    logging = block(body, "logging_config")
    assert logging["log_group"] == f'${{aws_cloudwatch_log_group.function["{name}"].name}}'
    assert logging["log_format"] == sam["LoggingConfig"]["LogFormat"]
    storage = body.get("ephemeral_storage")
    assert (storage[0]["size"] if storage else None) == sam.get("EphemeralStorage", {}).get("Size")
    dlq = body.get("dead_letter_config")
    sam_dlq = sam.get("DeadLetterQueue", {}).get("TargetArn", {}).get("Fn::GetAtt", [None])[0]
    tf_dlq = {"${aws_sqs_queue.plan_dlq.arn}": "PlanDeadLetterQueue"}
    tf_dlq["${aws_sqs_queue.work_dlq.arn}"] = "DeadLetterQueue"
    assert (tf_dlq[dlq[0]["target_arn"]] if dlq else None) == sam_dlq


@pytest.mark.parametrize(("sam_name", "name"), sorted(FUNCTIONS_TF.items()))
def test_environment_names_are_settings_and_the_templates(
    module: dict[str, Any], template: dict[str, Any], sam_name: str, name: str
) -> None:
    body = resources(module, "aws_lambda_function")[name]
    names = tf_environment_names(block(body, "environment")["variables"], module)
    assert not unknown_environment(names)
    assert names == set(function(template, sam_name)["Environment"]["Variables"])
    assert ("IMGPIPE_NOTIFY_TOPIC_ARN" in names) == (sam_name in NOTIFIERS)
    common = module["locals"]["common_environment"]
    assert common["POWERTOOLS_SERVICE_NAME"] == "imgpipe"
    assert module["locals"]["notify_environment"] == {
        "IMGPIPE_NOTIFY_TOPIC_ARN": "${aws_sns_topic.batch_complete.arn}"
    }


def test_worker_concurrency_may_be_left_unset(module: dict[str, Any]) -> None:
    functions = resources(module, "aws_lambda_function")
    assert functions["worker"]["reserved_concurrent_executions"] == (
        "${var.worker_reserved_concurrency}"
    )
    assert module["variable"]["worker_reserved_concurrency"]["default"] is None
    mapping = resources(module, "aws_lambda_event_source_mapping")["work_queue"]
    (scaling,) = mapping["dynamic"]
    assert scaling["scaling_config"]["for_each"] == (
        "${var.worker_reserved_concurrency == null ? [] : [var.worker_reserved_concurrency]}"
    )
    assert functions["sweep"]["reserved_concurrent_executions"] == 1


@pytest.mark.parametrize(("queue", "dlq", "consumer", "sam_queue", "attributes"), QUEUES)
def test_queue_consumers(
    module: dict[str, Any],
    queue: str,
    dlq: str,
    consumer: str,
    sam_queue: str,
    attributes: dict[str, str],
) -> None:
    (mapping,) = [
        m
        for m in resources(module, "aws_lambda_event_source_mapping").values()
        if m["event_source_arn"] == f"${{aws_sqs_queue.{queue}.arn}}"
    ]
    assert mapping["function_name"] == f"${{aws_lambda_function.{consumer}.arn}}"
    assert mapping["batch_size"] == 1
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]


def test_sweep_runs_every_five_minutes_one_at_a_time(
    module: dict[str, Any], template: dict[str, Any]
) -> None:
    rule = resources(module, "aws_cloudwatch_event_rule")["sweep"]
    (event,) = function(template, "SweepFunction")["Events"].values()
    assert rule["schedule_expression"] == event["Properties"]["Schedule"] == "rate(5 minutes)"
    target = resources(module, "aws_cloudwatch_event_target")["sweep"]
    assert target["arn"] == "${aws_lambda_function.sweep.arn}"
    permission = resources(module, "aws_lambda_permission")["sweep_schedule"]
    assert permission["principal"] == "events.amazonaws.com"
    assert permission["source_arn"] == "${aws_cloudwatch_event_rule.sweep.arn}"
    invoke = resources(module, "aws_lambda_function_event_invoke_config")["sweep"]
    sam = function(template, "SweepFunction")["EventInvokeConfig"]
    assert invoke["maximum_retry_attempts"] == sam["MaximumRetryAttempts"] == 0
    assert invoke["maximum_event_age_in_seconds"] == sam["MaximumEventAgeInSeconds"]


def test_log_groups_keep_the_templates_retention(
    module: dict[str, Any], template: dict[str, Any]
) -> None:
    group = resources(module, "aws_cloudwatch_log_group")["function"]
    assert group["for_each"] == "${local.functions}"
    functions = set(re.findall(r'"(\w+)"', module["locals"]["functions"]))
    assert functions == set(FUNCTIONS_TF.values())
    assert group["name"] == "/aws/lambda/${var.resource_prefix}-${each.key}"
    assert (
        module["variable"]["log_retention_days"]["default"]
        == (template["Parameters"]["LogRetentionDays"]["Default"])
    )


# -- permissions -------------------------------------------------------------------------


def _tf_index(resource_text: str) -> str | None:
    match = {
        "${local.batch_index}": BATCH_INDEX,
        "${local.state_index}": STATUS_INDEX,
        "${local.open_index}": OPEN_BATCH_INDEX,
    }
    return match.get(resource_text)


@pytest.mark.parametrize(("sam_name", "name"), sorted(FUNCTIONS_TF.items()))
def test_roles_hold_exactly_what_the_code_needs(
    module: dict[str, Any], template: dict[str, Any], sam_name: str, name: str
) -> None:
    role = sam_name.removesuffix("Function") + "Role"
    granted: set[str] = set()
    for statement in tf_statements(module, name):
        assert statement.get("effect", "Allow") == "Allow"
        actions = statement["actions"]
        assert not [a for a in actions if "*" in a]
        if set(actions) == TRACING_ACTIONS:  # X-Ray has no resource-level permissions
            assert statement["resources"] == ["*"]
        else:
            assert "*" not in as_list(statement["resources"])
        granted.update(actions)
    assert granted <= set(USED) | TRACING_ACTIONS
    assert granted == NEEDS[role]
    sam_granted = {a for s in statements(template, role) for a in as_list(s["Action"])}
    assert granted == sam_granted


@pytest.mark.parametrize(("sam_name", "name"), sorted(FUNCTIONS_TF.items()))
def test_statements_are_the_templates(
    module: dict[str, Any], template: dict[str, Any], sam_name: str, name: str
) -> None:
    """Statement by statement (by Sid), the same actions as the SAM role's."""
    role = sam_name.removesuffix("Function") + "Role"
    tf = {s["sid"]: sorted(s["actions"]) for s in tf_statements(module, name)}
    sam = {s["Sid"]: sorted(as_list(s["Action"])) for s in statements(template, role)}
    assert tf == sam
    indexes = sorted(
        index
        for s in tf_statements(module, name)
        for r in as_list(s["resources"])
        if (index := _tf_index(r)) is not None
    )
    assert indexes == sorted(
        r["Fn::Sub"].rsplit("/", 1)[1]
        for s in statements(template, role)
        for r in as_list(s["Resource"])
        if "/index/" in json.dumps(r)
    )


def test_role_policies_and_trust(module: dict[str, Any]) -> None:
    roles = resources(module, "aws_iam_role")["function"]
    assert roles["for_each"] == "${local.functions}"
    (trust,) = module["data"]["aws_iam_policy_document"]["assume_lambda"]["statement"]
    assert trust["actions"] == ["sts:AssumeRole"]
    assert block(trust, "principals") == {
        "type": "Service",
        "identifiers": ["lambda.amazonaws.com"],
    }
    policy = resources(module, "aws_iam_role_policy")["function"]
    assert policy["policy"] == "${local.policies[each.key]}"
    assert set(module["locals"]["policies"]) == set(FUNCTIONS_TF.values())
    kinds = set(module["resource"])
    assert not kinds & {"aws_iam_policy", "aws_iam_role_policy_attachment", "aws_iam_user"}


def test_notices_go_to_an_encrypted_topic_only(module: dict[str, Any]) -> None:
    topic = resources(module, "aws_sns_topic")["batch_complete"]
    assert topic["kms_master_key_id"] == "alias/aws/sns"
    for sam_name, name in FUNCTIONS_TF.items():
        grants = [
            s["resources"] for s in tf_statements(module, name) if "sns:Publish" in s["actions"]
        ]
        expected = [["${aws_sns_topic.batch_complete.arn}"]] if sam_name in NOTIFIERS else []
        assert grants == expected, name


def test_readable_buckets_grant_reads_and_listing_only_when_listed(module: dict[str, Any]) -> None:
    assert module["variable"]["readable_buckets"]["default"] == []
    assert module["locals"]["readable_object_arns"] == (
        '${[for b in var.readable_buckets : "arn:${local.partition}:s3:::${b}/*"]}'
    )
    assert module["locals"]["readable_bucket_arns"] == (
        '${[for b in var.readable_buckets : "arn:${local.partition}:s3:::${b}"]}'
    )
    for name in FUNCTIONS_TF.values():
        dynamic = module["data"]["aws_iam_policy_document"][name].get("dynamic", [])
        if name not in ("planner", "worker"):
            assert not dynamic
            continue
        granted = {}
        for entry in dynamic:
            assert entry["statement"]["for_each"] == (
                "${length(var.readable_buckets) == 0 ? [] : [1]}"
            )
            (content,) = entry["statement"]["content"]
            (action,) = content["actions"]
            granted[action] = content["resources"]
        assert granted == {
            "s3:GetObject": "${local.readable_object_arns}",
            "s3:ListBucket": "${local.readable_bucket_arns}",
        }, name
