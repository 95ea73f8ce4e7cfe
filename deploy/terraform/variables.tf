variable "resource_prefix" {
  description = "Prefix of function, role, queue and topic names (lowercase, at most 20 characters)."
  type        = string
  default     = "imgpipe"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.resource_prefix))
    error_message = "resource_prefix: lowercase letters, digits and '-', 2 to 20 characters, starting with a letter."
  }
}

variable "lambda_zip" {
  description = "The function package, built by `make package` (ARCH=arm64 for arm64)."
  type        = string
  default     = "../../build/imgpipe-lambda.zip"
}

variable "architecture" {
  description = "CPU architecture of the functions; build the package for the same one."
  type        = string
  default     = "x86_64"
  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture: x86_64 or arm64."
  }
}

variable "table_name" {
  description = "The state table (the original design's name)."
  type        = string
  default     = "tiktok-creator-processing-state"
}

# Buckets get generated names (bucket_prefix) unless a name is given: a retained
# bucket with a fixed name would block the next deployment of the same names.
variable "input_bucket_name" {
  description = "Name of the input bucket; null for a generated name."
  type        = string
  default     = null
}

variable "output_bucket_name" {
  description = "Name of the output bucket; null for a generated name."
  type        = string
  default     = null
}

variable "temp_bucket_name" {
  description = "Name of the temp bucket; null for a generated name."
  type        = string
  default     = null
}

variable "csv_prefix" {
  description = "A CSV (.csv or .CSV) uploaded under this prefix of the input bucket starts a batch."
  type        = string
  default     = "csv-files/"
}

variable "compress_prefix" {
  description = "An image uploaded under this prefix is compressed to compressed/<key>. Must not overlap csv_prefix."
  type        = string
  default     = "uploads/"
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the embedded-format metrics (IMGPIPE_METRICS_NAMESPACE)."
  type        = string
  default     = "imgpipe"
}

variable "worker_reserved_concurrency" {
  description = <<-EOT
    Reserved concurrency of the worker, also the work queue poller's maximum concurrency.
    null leaves both unset: accounts with a low concurrency limit (new accounts have 10)
    cannot reserve any. With a value, it must be at least 2.
  EOT
  type        = number
  default     = null
  validation {
    condition     = var.worker_reserved_concurrency == null ? true : var.worker_reserved_concurrency >= 2 && var.worker_reserved_concurrency <= 1000
    error_message = "worker_reserved_concurrency: null, or 2 to 1000."
  }
}

variable "readable_buckets" {
  description = "Other buckets whose objects csv_s3 messages may name (s3:GetObject on <bucket>/*, s3:ListBucket on <bucket>); empty keeps least privilege."
  type        = list(string)
  default     = []
}

variable "log_retention_days" {
  description = "Days the functions' logs are kept."
  type        = number
  default     = 30
}

variable "alarm_topic_arn" {
  description = "SNS topic that receives alarm notifications (null for none)."
  type        = string
  default     = null
}

variable "error_count_alarm_threshold" {
  description = "Failed covers and creators (ErrorCount) in 5 minutes that raise the ErrorCount alarm."
  type        = number
  default     = 100
}

variable "oldest_message_alarm_seconds" {
  description = "Age of the oldest work message that raises the backlog alarm."
  type        = number
  default     = 3600
}
