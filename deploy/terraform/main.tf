# imgpipe on AWS, the Terraform twin of deploy/template.yaml: a planner function turns
# each CSV into per-creator messages on a work queue, a worker renders one creator per
# message, a compression function shrinks uploaded images, and a scheduled sweep
# finishes what a dead worker left. tests/integration/test_terraform.py checks that
# this module and the SAM template agree with each other and with the code.
#
# The HTTP API (/v1, dashboard) is deployed by the SAM template only.

provider "aws" {}

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  region    = data.aws_region.current.name
  partition = data.aws_partition.current.partition

  # The values of aws_resources.{PLANNER,WORKER,COMPRESS,SWEEP}_TIMEOUT.
  planner_timeout  = 900
  worker_timeout   = 300
  compress_timeout = 60
  sweep_timeout    = 300

  # Settings every function reads (settings.py names). Unlike in the SAM template,
  # the notified functions may refer to the input bucket here: the notification is
  # its own resource, so there is no dependency cycle.
  common_environment = {
    IMGPIPE_BACKEND             = "aws"
    IMGPIPE_INPUT_BUCKET        = aws_s3_bucket.input.id
    IMGPIPE_OUTPUT_BUCKET       = aws_s3_bucket.output.id
    IMGPIPE_TEMP_BUCKET         = aws_s3_bucket.temp.id
    IMGPIPE_SQS_QUEUE_URL       = aws_sqs_queue.work.url
    IMGPIPE_SQS_DLQ_URL         = aws_sqs_queue.work_dlq.url
    IMGPIPE_PLAN_QUEUE_URL      = aws_sqs_queue.plan.url
    IMGPIPE_PLAN_DLQ_URL        = aws_sqs_queue.plan_dlq.url
    IMGPIPE_DYNAMODB_TABLE_NAME = aws_dynamodb_table.state.name
    IMGPIPE_CSV_PREFIX          = var.csv_prefix
    IMGPIPE_COMPRESS_PREFIX     = var.compress_prefix
    IMGPIPE_METRICS_NAMESPACE   = var.metrics_namespace
    # A CSV is untrusted: never read the function's own files; /tmp is the only
    # writable folder.
    IMGPIPE_ALLOW_LOCAL_FILES = "false"
    IMGPIPE_DATA_DIR          = "/tmp/imgpipe-data"
    # Powertools' service: the `service` dimension of every metric, and the logger's.
    POWERTOOLS_SERVICE_NAME = "imgpipe"
  }

  # The functions that may write a batch summary send the completion notice with it.
  notify_environment = {
    IMGPIPE_NOTIFY_TOPIC_ARN = aws_sns_topic.batch_complete.arn
  }
  # Other buckets a csv_s3 message may name (empty: the input bucket only).
  readable_environment = {
    IMGPIPE_READABLE_BUCKETS = join(",", var.readable_buckets)
  }
  readable_object_arns = [for b in var.readable_buckets : "arn:${local.partition}:s3:::${b}/*"]
  readable_bucket_arns = [for b in var.readable_buckets : "arn:${local.partition}:s3:::${b}"]
}
