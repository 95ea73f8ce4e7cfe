output "input_bucket_name" {
  description = "Upload CSVs under csv_prefix and images under compress_prefix here."
  value       = aws_s3_bucket.input.id
}
output "output_bucket_name" {
  description = "Collages, per-creator metadata, batch summaries and index.html."
  value       = aws_s3_bucket.output.id
}
output "temp_bucket_name" {
  description = "Batch plans (processing/, expire after 7 days)."
  value       = aws_s3_bucket.temp.id
}
output "work_queue_url" {
  description = "IMGPIPE_SQS_QUEUE_URL (`imgpipe worker` can consume it too)."
  value       = aws_sqs_queue.work.url
}
output "dead_letter_queue_url" {
  description = "IMGPIPE_SQS_DLQ_URL (`imgpipe dlq list|redrive`)."
  value       = aws_sqs_queue.work_dlq.url
}
output "plan_queue_url" {
  description = "IMGPIPE_PLAN_QUEUE_URL (csv_s3 planning messages)."
  value       = aws_sqs_queue.plan.url
}
output "plan_dead_letter_queue_url" {
  description = "IMGPIPE_PLAN_DLQ_URL (CSVs that could not be planned)."
  value       = aws_sqs_queue.plan_dlq.url
}
output "state_table_name" {
  description = "IMGPIPE_DYNAMODB_TABLE_NAME."
  value       = aws_dynamodb_table.state.name
}
output "notify_topic_arn" {
  description = "IMGPIPE_NOTIFY_TOPIC_ARN: subscribe to receive batch completion notices."
  value       = aws_sns_topic.batch_complete.arn
}
output "function_names" {
  value = local.function_names
}
output "dashboard_name" {
  value = aws_cloudwatch_dashboard.imgpipe.dashboard_name
}
