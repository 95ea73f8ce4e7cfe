# The four functions of the SAM template, from the zip `make package` builds.

resource "aws_cloudwatch_log_group" "function" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts at rest by default; logs hold keys, counts and errors, not image data or secrets. A KMS key is optional hardening.
  #checkov:skip=CKV_AWS_338:Retention is a variable (log_retention_days, 30 days by default, as in the SAM template); a year of debug logs is the operator's choice.
  for_each          = local.functions
  name              = "/aws/lambda/${var.resource_prefix}-${each.key}"
  retention_in_days = var.log_retention_days
}

locals {
  package_hash = filebase64sha256(var.lambda_zip)
}

resource "aws_lambda_function" "planner" {
  #checkov:skip=CKV_AWS_115:One invocation per batch; a reserved cap would throttle S3 events and planning messages. The work it creates is bounded by the worker's concurrency.
  #checkov:skip=CKV_AWS_117:Reaches S3, SQS, DynamoDB and SNS over their public endpoints; a VPC would need NAT gateways or endpoints for no gain.
  #checkov:skip=CKV_AWS_173:The environment holds resource names only, no secrets; Lambda encrypts it at rest with the AWS managed key.
  #checkov:skip=CKV_AWS_272:The package is built from the lock file by `make package`; code signing needs a signing profile per account.
  function_name    = "${var.resource_prefix}-planner"
  description      = "CSV (S3 upload or planning message) -> plan objects, state, work messages."
  handler          = "imgpipe.entrypoints.aws_lambda.planner_handler"
  runtime          = "python3.12"
  architectures    = [var.architecture]
  filename         = var.lambda_zip
  source_code_hash = local.package_hash
  role             = aws_iam_role.function["planner"].arn
  # 3008 MB: about two vCPUs for parsing, grouping and writing a large CSV's plan.
  memory_size = 3008
  timeout     = local.planner_timeout
  # The CSV is staged in a SQLite file under /tmp: about twice its size.
  ephemeral_storage {
    size = 4096
  }
  environment {
    variables = merge(local.common_environment, local.notify_environment, local.readable_environment)
  }
  # An S3 event whose invocation failed three times lands here; the planner reads S3
  # notifications from its queue too, so a redrive to the planning queue replays it.
  dead_letter_config {
    target_arn = aws_sqs_queue.plan_dlq.arn
  }
  tracing_config {
    mode = "Active"
  }
  logging_config {
    log_format            = "JSON"
    application_log_level = "INFO"
    system_log_level      = "WARN"
    log_group             = aws_cloudwatch_log_group.function["planner"].name
  }
  depends_on = [aws_iam_role_policy.function]
}

resource "aws_lambda_function" "worker" {
  #checkov:skip=CKV_AWS_115:Reserved concurrency is the worker_reserved_concurrency variable; null (the default) leaves it unset for accounts with a low concurrency limit.
  #checkov:skip=CKV_AWS_116:Invoked by the work queue's event source only (synchronously); the queue's redrive policy is its dead-letter queue.
  #checkov:skip=CKV_AWS_117:Downloads covers from the public internet; a VPC would need NAT gateways. SSRF is guarded in code (fetch/netguard.py).
  #checkov:skip=CKV_AWS_173:The environment holds resource names only, no secrets; Lambda encrypts it at rest with the AWS managed key.
  #checkov:skip=CKV_AWS_272:The package is built from the lock file by `make package`; code signing needs a signing profile per account.
  function_name    = "${var.resource_prefix}-worker"
  description      = "One creator per work message - fetch covers, render, record, summarise."
  handler          = "imgpipe.entrypoints.aws_lambda.worker_handler"
  runtime          = "python3.12"
  architectures    = [var.architecture]
  filename         = var.lambda_zip
  source_code_hash = local.package_hash
  role             = aws_iam_role.function["worker"].arn
  # 3008 MB: concurrent downloads and decodes of up to 35 covers, two vCPUs.
  memory_size                    = 3008
  timeout                        = local.worker_timeout
  reserved_concurrent_executions = var.worker_reserved_concurrency
  environment {
    variables = merge(
      local.common_environment,
      local.notify_environment,
      local.readable_environment,
      {
        # A claim without a heartbeat expires when the invocation holding it must
        # have ended: the function's timeout.
        IMGPIPE_CREATOR_LEASE_SECONDS = tostring(local.worker_timeout)
        # /tmp holds 512 MB by default: half of it for cached covers of reruns.
        IMGPIPE_CACHE_MAX_BYTES = "268435456"
      },
    )
  }
  tracing_config {
    mode = "Active"
  }
  logging_config {
    log_format            = "JSON"
    application_log_level = "INFO"
    system_log_level      = "WARN"
    log_group             = aws_cloudwatch_log_group.function["worker"].name
  }
  depends_on = [aws_iam_role_policy.function]
}

resource "aws_lambda_function" "compress" {
  #checkov:skip=CKV_AWS_115:Short invocations driven by uploads; a reserved cap would only throttle bursts into retries.
  #checkov:skip=CKV_AWS_117:Reaches S3 over its public endpoint only; a VPC would need NAT gateways or endpoints for no gain.
  #checkov:skip=CKV_AWS_173:The environment holds resource names only, no secrets; Lambda encrypts it at rest with the AWS managed key.
  #checkov:skip=CKV_AWS_272:The package is built from the lock file by `make package`; code signing needs a signing profile per account.
  function_name    = "${var.resource_prefix}-compress"
  description      = "An image under the compress prefix -> an 800x800-bounded JPEG in compressed/."
  handler          = "imgpipe.entrypoints.aws_lambda.compress_handler"
  runtime          = "python3.12"
  architectures    = [var.architecture]
  filename         = var.lambda_zip
  source_code_hash = local.package_hash
  role             = aws_iam_role.function["compress"].arn
  # One image at a time, refused above IMGPIPE_MAX_IMAGE_PIXELS before decoding.
  memory_size = 1024
  timeout     = local.compress_timeout
  environment {
    variables = local.common_environment
  }
  # An S3 event whose invocation failed three times lands here (`imgpipe dlq list`).
  dead_letter_config {
    target_arn = aws_sqs_queue.work_dlq.arn
  }
  tracing_config {
    mode = "Active"
  }
  logging_config {
    log_format            = "JSON"
    application_log_level = "INFO"
    system_log_level      = "WARN"
    log_group             = aws_cloudwatch_log_group.function["compress"].name
  }
  depends_on = [aws_iam_role_policy.function]
}

resource "aws_lambda_function" "sweep" {
  #checkov:skip=CKV_AWS_116:A scheduled sweep: the next run redoes whatever a failed run left, and the Errors alarm reports the failure.
  #checkov:skip=CKV_AWS_117:Reaches S3, SQS, DynamoDB and SNS over their public endpoints; a VPC would need NAT gateways or endpoints for no gain.
  #checkov:skip=CKV_AWS_173:The environment holds resource names only, no secrets; Lambda encrypts it at rest with the AWS managed key.
  #checkov:skip=CKV_AWS_272:The package is built from the lock file by `make package`; code signing needs a signing profile per account.
  function_name    = "${var.resource_prefix}-sweep"
  description      = "Every 5 minutes - re-queue expired creator claims, finish finished batches."
  handler          = "imgpipe.entrypoints.aws_lambda.sweep_handler"
  runtime          = "python3.12"
  architectures    = [var.architecture]
  filename         = var.lambda_zip
  source_code_hash = local.package_hash
  role             = aws_iam_role.function["sweep"].arn
  memory_size      = 1024
  timeout          = local.sweep_timeout
  # One sweep at a time.
  reserved_concurrent_executions = 1
  environment {
    variables = merge(
      local.common_environment,
      local.notify_environment,
      { IMGPIPE_CREATOR_LEASE_SECONDS = tostring(local.worker_timeout) },
    )
  }
  tracing_config {
    mode = "Active"
  }
  logging_config {
    log_format            = "JSON"
    application_log_level = "INFO"
    system_log_level      = "WARN"
    log_group             = aws_cloudwatch_log_group.function["sweep"].name
  }
  depends_on = [aws_iam_role_policy.function]
}

# -- event sources ---------------------------------------------------------------------

resource "aws_lambda_event_source_mapping" "work_queue" {
  event_source_arn        = aws_sqs_queue.work.arn
  function_name           = aws_lambda_function.worker.arn
  batch_size              = 1
  function_response_types = ["ReportBatchItemFailures"]
  # Never more pollers' invocations than the worker may run: no throttled invocation,
  # so no healthy message counts receives towards the DLQ.
  dynamic "scaling_config" {
    for_each = var.worker_reserved_concurrency == null ? [] : [var.worker_reserved_concurrency]
    content {
      maximum_concurrency = scaling_config.value
    }
  }
}

resource "aws_lambda_event_source_mapping" "plan_queue" {
  event_source_arn        = aws_sqs_queue.plan.arn
  function_name           = aws_lambda_function.planner.arn
  batch_size              = 1
  function_response_types = ["ReportBatchItemFailures"]
}

# A run that would overlap a slow one is dropped, not queued: the next schedule
# comes five minutes later.
resource "aws_lambda_function_event_invoke_config" "sweep" {
  function_name                = aws_lambda_function.sweep.function_name
  maximum_event_age_in_seconds = 240
  maximum_retry_attempts       = 0
}

resource "aws_cloudwatch_event_rule" "sweep" {
  name                = "${var.resource_prefix}-sweep"
  description         = "imgpipe sweep (stuck creators, unfinished batches)"
  schedule_expression = "rate(5 minutes)"
}

resource "aws_cloudwatch_event_target" "sweep" {
  rule = aws_cloudwatch_event_rule.sweep.name
  arn  = aws_lambda_function.sweep.arn
}

resource "aws_lambda_permission" "sweep_schedule" {
  statement_id  = "Every5Minutes"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.sweep.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.sweep.arn
}
