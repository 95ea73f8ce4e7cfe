# One role per function, holding only what its code paths call
# (tests/integration/iac_facts.py lists each action with the code that needs it).

locals {
  functions   = toset(["planner", "worker", "compress", "sweep"])
  input_arn   = aws_s3_bucket.input.arn
  output_arn  = aws_s3_bucket.output.arn
  plans_arn   = "${aws_s3_bucket.temp.arn}/processing/*"
  table_arn   = aws_dynamodb_table.state.arn
  batch_index = "${aws_dynamodb_table.state.arn}/index/batch-id-index"
  state_index = "${aws_dynamodb_table.state.arn}/index/status-date-index"
  open_index  = "${aws_dynamodb_table.state.arn}/index/open-batch-index"
}

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "function" {
  for_each           = local.functions
  name               = "${var.resource_prefix}-${each.key}"
  description        = "imgpipe ${each.key}, least privilege."
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
}

# What the Lambda runtime does with the role: ship stdout (logs, EMF metric documents)
# to the function's log group, and send trace segments (tracing is Active). X-Ray has
# no resource-level permissions, hence "*".
data "aws_iam_policy_document" "runtime" {
  for_each = local.functions
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }
  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

data "aws_iam_policy_document" "planner" {
  source_policy_documents = [data.aws_iam_policy_document.runtime["planner"].json]
  # Read the CSV (under the CSV prefix, api-uploads/ or any key a csv_s3 message
  # names) and move it to archived/ once planned (copy, then delete the original).
  statement {
    sid       = "InputRead"
    actions   = ["s3:GetObject"]
    resources = ["${local.input_arn}/*"]
  }
  statement {
    sid       = "InputArchive"
    actions   = ["s3:PutObject"]
    resources = ["${local.input_arn}/archived/*"]
  }
  statement {
    sid     = "InputArchiveDelete"
    actions = ["s3:DeleteObject"]
    resources = [
      "${local.input_arn}/${var.csv_prefix}*",
      "${local.input_arn}/*.csv",
      "${local.input_arn}/*.CSV",
    ]
  }
  # Plan objects and planning checkpoints (a rerun continues, not restarts).
  statement {
    sid       = "Plans"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = [local.plans_arn]
  }
  # A CSV without creators is a finished batch: the planner writes its summary.
  statement {
    sid       = "OutputObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${local.output_arn}/*"]
  }
  statement {
    sid       = "OutputList"
    actions   = ["s3:ListBucket"]
    resources = [local.output_arn]
  }
  statement {
    sid = "State"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:BatchWriteItem",
      "dynamodb:Query",
    ]
    resources = [local.table_arn]
  }
  statement {
    sid       = "StateIndexes"
    actions   = ["dynamodb:Query"]
    resources = [local.batch_index]
  }
  # SendMessageBatch is authorised by sqs:SendMessage.
  statement {
    sid       = "FanOut"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.work.arn]
  }
  # The event source polls with this role; the planner heartbeats a long plan.
  statement {
    sid = "ConsumePlanQueue"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:ChangeMessageVisibility",
    ]
    resources = [aws_sqs_queue.plan.arn]
  }
  statement {
    sid       = "FailedS3Events"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.plan_dlq.arn]
  }
  statement {
    sid       = "Notify"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.batch_complete.arn]
  }
  dynamic "statement" {
    for_each = length(var.readable_buckets) == 0 ? [] : [1]
    content {
      sid       = "ReadableBuckets"
      actions   = ["s3:GetObject"]
      resources = local.readable_object_arns
    }
  }
  # Without ListBucket, S3 answers a read of a missing key (a cover named in the CSV
  # but not stored) with 403 AccessDenied, not 404.
  dynamic "statement" {
    for_each = length(var.readable_buckets) == 0 ? [] : [1]
    content {
      sid       = "ReadableBucketsList"
      actions   = ["s3:ListBucket"]
      resources = local.readable_bucket_arns
    }
  }
}

data "aws_iam_policy_document" "worker" {
  source_policy_documents = [data.aws_iam_policy_document.runtime["worker"].json]
  # Covers given relative to the CSV live anywhere in the input bucket.
  statement {
    sid       = "InputRead"
    actions   = ["s3:GetObject"]
    resources = ["${local.input_arn}/*"]
  }
  # The worker that finishes a batch's last creator archives its CSV.
  statement {
    sid       = "InputArchive"
    actions   = ["s3:PutObject"]
    resources = ["${local.input_arn}/archived/*"]
  }
  statement {
    sid       = "InputArchiveDelete"
    actions   = ["s3:DeleteObject"]
    resources = ["${local.input_arn}/${var.csv_prefix}*"]
  }
  # The creator's rows, read by byte range from the batch's plan object.
  statement {
    sid       = "Plans"
    actions   = ["s3:GetObject"]
    resources = [local.plans_arn]
  }
  # Collages, metadata, summaries, gallery; HeadObject on earlier collages needs
  # ListBucket to see a 404 rather than a 403; a summary over 8 MiB goes up in parts.
  statement {
    sid       = "OutputObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${local.output_arn}/*"]
  }
  statement {
    sid       = "OutputList"
    actions   = ["s3:ListBucket"]
    resources = [local.output_arn]
  }
  # Claims and leases, the finish transaction (authorised by PutItem and UpdateItem),
  # the batch's counters, and reads of the batch's creators.
  statement {
    sid       = "State"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"]
    resources = [local.table_arn]
  }
  statement {
    sid       = "StateIndexes"
    actions   = ["dynamodb:Query"]
    resources = [local.batch_index, local.state_index]
  }
  statement {
    sid = "ConsumeWorkQueue"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:ChangeMessageVisibility",
    ]
    resources = [aws_sqs_queue.work.arn]
  }
  statement {
    sid       = "Notify"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.batch_complete.arn]
  }
  dynamic "statement" {
    for_each = length(var.readable_buckets) == 0 ? [] : [1]
    content {
      sid       = "ReadableBuckets"
      actions   = ["s3:GetObject"]
      resources = local.readable_object_arns
    }
  }
  # Without ListBucket, S3 answers a read of a missing key (a cover named in the CSV
  # but not stored) with 403 AccessDenied, not 404.
  dynamic "statement" {
    for_each = length(var.readable_buckets) == 0 ? [] : [1]
    content {
      sid       = "ReadableBucketsList"
      actions   = ["s3:ListBucket"]
      resources = local.readable_bucket_arns
    }
  }
}

data "aws_iam_policy_document" "compress" {
  source_policy_documents = [data.aws_iam_policy_document.runtime["compress"].json]
  statement {
    sid       = "ReadUploads"
    actions   = ["s3:GetObject"]
    resources = ["${local.input_arn}/${var.compress_prefix}*"]
  }
  statement {
    sid       = "WriteCompressed"
    actions   = ["s3:PutObject"]
    resources = ["${local.input_arn}/compressed/*"]
  }
  statement {
    sid       = "FailedS3Events"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.work_dlq.arn]
  }
}

data "aws_iam_policy_document" "sweep" {
  source_policy_documents = [data.aws_iam_policy_document.runtime["sweep"].json]
  statement {
    sid       = "Plans"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = [local.plans_arn]
  }
  # A batch the sweep finishes has its CSV archived (copy, then delete).
  statement {
    sid       = "InputArchiveRead"
    actions   = ["s3:GetObject"]
    resources = ["${local.input_arn}/${var.csv_prefix}*"]
  }
  statement {
    sid       = "InputArchive"
    actions   = ["s3:PutObject"]
    resources = ["${local.input_arn}/archived/*"]
  }
  statement {
    sid       = "InputArchiveDelete"
    actions   = ["s3:DeleteObject"]
    resources = ["${local.input_arn}/${var.csv_prefix}*"]
  }
  # A batch whose last worker died is summarised here: the worker's writes.
  statement {
    sid       = "OutputObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${local.output_arn}/*"]
  }
  statement {
    sid       = "OutputList"
    actions   = ["s3:ListBucket"]
    resources = [local.output_arn]
  }
  statement {
    sid       = "State"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"]
    resources = [local.table_arn]
  }
  # Stuck claims by status; the open batches; a finished batch's creators for its summary.
  statement {
    sid       = "StateIndexes"
    actions   = ["dynamodb:Query"]
    resources = [local.state_index, local.batch_index, local.open_index]
  }
  statement {
    sid       = "Requeue"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.work.arn]
  }
  statement {
    sid       = "Notify"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.batch_complete.arn]
  }
}

locals {
  policies = {
    planner  = data.aws_iam_policy_document.planner.json
    worker   = data.aws_iam_policy_document.worker.json
    compress = data.aws_iam_policy_document.compress.json
    sweep    = data.aws_iam_policy_document.sweep.json
  }
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions
  name     = each.key
  role     = aws_iam_role.function[each.key].id
  policy   = local.policies[each.key]
}
