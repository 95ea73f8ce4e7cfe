# Alarms and a dashboard on what the functions emit: Lambda's own Errors and
# Throttles, the EMF metrics of the code (emf_metrics.EmfMetrics: the
# metrics_namespace, dimensioned by Powertools' service and the function's name),
# and the queues' depth and age.

locals {
  alarm_actions = var.alarm_topic_arn == null ? [] : [var.alarm_topic_arn]
  function_names = {
    planner  = aws_lambda_function.planner.function_name
    worker   = aws_lambda_function.worker.function_name
    compress = aws_lambda_function.compress.function_name
    sweep    = aws_lambda_function.sweep.function_name
  }
}

resource "aws_cloudwatch_metric_alarm" "errors" {
  for_each            = local.functions
  alarm_name          = "${var.resource_prefix}-${each.key}-errors"
  alarm_description   = "The ${each.key} function raised."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = local.function_names[each.key] }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "throttles" {
  for_each            = local.functions
  alarm_name          = "${var.resource_prefix}-${each.key}-throttles"
  alarm_description   = "The ${each.key} function was throttled (concurrency exhausted)."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = local.function_names[each.key] }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 3
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  for_each = {
    work = aws_sqs_queue.work_dlq.name
    plan = aws_sqs_queue.plan_dlq.name
  }
  alarm_name          = "${var.resource_prefix}-${each.key}-dead-letters"
  alarm_description   = "Messages are in the ${each.key} dead-letter queue: inspect with `imgpipe dlq list`, replay with `imgpipe dlq redrive`."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "work_queue_age" {
  alarm_name          = "${var.resource_prefix}-work-queue-age"
  alarm_description   = "The oldest work message waited too long (backlog not draining)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.work.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  threshold           = var.oldest_message_alarm_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

# Stuck creators in three sweeps in a row mean that re-queued work keeps dying, not
# one crash the sweep already repaired.
resource "aws_cloudwatch_metric_alarm" "stuck_creators" {
  alarm_name        = "${var.resource_prefix}-stuck-creators"
  alarm_description = "The sweep found creators stuck in processing in three consecutive 5-minute periods: look at the worker's logs."
  namespace         = var.metrics_namespace
  metric_name       = "StuckCreators"
  dimensions = {
    service       = "imgpipe"
    function_name = aws_lambda_function.sweep.function_name
  }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

# A batch the sweep failed to finalise ten times in a row (about two days of backoff,
# service/sweep_backoff.py) needs an operator: one period is enough.
resource "aws_cloudwatch_metric_alarm" "batches_failing_to_finalise" {
  alarm_name        = "${var.resource_prefix}-batches-failing-to-finalise"
  alarm_description = "The sweep failed to finalise a batch (its summary, archive or notice) ten times in a row: its log names the batch and the reason."
  namespace         = var.metrics_namespace
  metric_name       = "BatchesFailingToFinalise"
  dimensions = {
    service       = "imgpipe"
    function_name = aws_lambda_function.sweep.function_name
  }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

# ErrorCount counts failed covers and failed creators: a few are the web's normal
# state, a burst means a source or the renderer is failing.
resource "aws_cloudwatch_metric_alarm" "error_count" {
  alarm_name        = "${var.resource_prefix}-error-count"
  alarm_description = "Many covers or creators failed in 5 minutes: see the batch summaries' failure reasons."
  namespace         = var.metrics_namespace
  metric_name       = "ErrorCount"
  dimensions = {
    service       = "imgpipe"
    function_name = aws_lambda_function.worker.function_name
  }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.error_count_alarm_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_dashboard" "imgpipe" {
  dashboard_name = var.resource_prefix
  dashboard_body = templatefile("${path.module}/dashboard.json.tftpl", {
    region     = local.region
    namespace  = var.metrics_namespace
    worker     = aws_lambda_function.worker.function_name
    sweep      = aws_lambda_function.sweep.function_name
    work_queue = aws_sqs_queue.work.name
    work_dlq   = aws_sqs_queue.work_dlq.name
    plan_dlq   = aws_sqs_queue.plan_dlq.name
  })
}
