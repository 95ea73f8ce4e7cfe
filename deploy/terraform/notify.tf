# Batch completion notices: the function that writes a batch's summary publishes a
# short JSON digest here (IMGPIPE_NOTIFY_TOPIC_ARN). Subscribe a queue, a function,
# an HTTPS endpoint or an address to it.
resource "aws_sns_topic" "batch_complete" {
  name = "${var.resource_prefix}-batch-complete"
  # The AWS managed key: its key policy lets principals of this account use it through
  # SNS, so publishers need sns:Publish only.
  kms_master_key_id = "alias/aws/sns"
}
