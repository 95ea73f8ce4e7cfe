# Two queues, each with its own dead-letter queue: the values of
# aws_resources.QUEUE_ATTRIBUTES, PLAN_QUEUE_ATTRIBUTES and MAX_RECEIVE_COUNT.
# AWS advises a visibility timeout of at least six times the consuming function's
# timeout; a live consumer heartbeats, so a long visibility only delays the
# redelivery of a message whose consumer died. Five receives leave room for
# throttled invocations and for messages that met a live claim and re-queued
# themselves with a delay.

locals {
  max_receive_count = 5
  retention_seconds = 1209600
}

resource "aws_sqs_queue" "work_dlq" {
  name                      = "${var.resource_prefix}-work-dlq"
  message_retention_seconds = local.retention_seconds
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "work" {
  name                       = "${var.resource_prefix}-work"
  visibility_timeout_seconds = 6 * local.worker_timeout
  message_retention_seconds  = local.retention_seconds
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.work_dlq.arn
    maxReceiveCount     = local.max_receive_count
  })
}

resource "aws_sqs_queue" "plan_dlq" {
  name                      = "${var.resource_prefix}-plan-dlq"
  message_retention_seconds = local.retention_seconds
  sqs_managed_sse_enabled   = true
}

# csv_s3 messages (from the API, or sent by hand as the original system did).
resource "aws_sqs_queue" "plan" {
  name                       = "${var.resource_prefix}-plan"
  visibility_timeout_seconds = 6 * local.planner_timeout
  message_retention_seconds  = local.retention_seconds
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.plan_dlq.arn
    maxReceiveCount     = local.max_receive_count
  })
}
