# Three buckets: input (CSVs, uploads), output (collages, results), temp (plans).
# Names are generated (bucket_prefix) unless given: a fixed name blocks the next
# deployment while the old bucket is kept. A bucket that holds objects is never
# destroyed (no force_destroy), as the template retains its input and output buckets.

resource "aws_s3_bucket" "input" {
  #checkov:skip=CKV_AWS_18:Server access logs would need a fourth bucket; object-level auditing is CloudTrail data events, enabled per account when wanted.
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice per account; CSVs can be uploaded again.
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256), which s3_store.py requests on every put; a KMS key would add kms permissions to every reader and writer.
  #checkov:skip=CKV2_AWS_62:Event notifications are configured in aws_s3_bucket_notification.input (CSV and image uploads).
  bucket        = var.input_bucket_name
  bucket_prefix = var.input_bucket_name == null ? "${var.resource_prefix}-input-" : null
}

resource "aws_s3_bucket" "output" {
  #checkov:skip=CKV_AWS_18:Server access logs would need a fourth bucket; object-level auditing is CloudTrail data events, enabled per account when wanted.
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice per account; collages can be rendered again from their CSVs.
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256), which s3_store.py requests on every put; a KMS key would add kms permissions to every reader and writer.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to results; the batch completion notice goes out through the SNS topic.
  bucket        = var.output_bucket_name
  bucket_prefix = var.output_bucket_name == null ? "${var.resource_prefix}-output-" : null
}

resource "aws_s3_bucket" "temp" {
  #checkov:skip=CKV_AWS_18:Scratch data (batch plans) that expires after 7 days; nothing to audit.
  #checkov:skip=CKV_AWS_21:Scratch data that expires after 7 days; old versions would only keep it longer. Plans are written once (conditional put).
  #checkov:skip=CKV_AWS_144:Scratch data that expires after 7 days; nothing to replicate.
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256), which s3_store.py requests on every put; a KMS key would add kms permissions to every reader and writer.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to plans being written.
  bucket        = var.temp_bucket_name
  bucket_prefix = var.temp_bucket_name == null ? "${var.resource_prefix}-temp-" : null
}

locals {
  buckets = {
    input  = aws_s3_bucket.input
    output = aws_s3_bucket.output
    temp   = aws_s3_bucket.temp
  }
}

resource "aws_s3_bucket_ownership_controls" "all" {
  for_each = local.buckets
  bucket   = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "all" {
  for_each                = local.buckets
  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# SSE-S3: s3_store.py sends ServerSideEncryption=AES256 on every put and copy.
resource "aws_s3_bucket_server_side_encryption_configuration" "all" {
  for_each = local.buckets
  bucket   = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "input" {
  bucket = aws_s3_bucket.input.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_versioning" "output" {
  bucket = aws_s3_bucket.output.id
  versioning_configuration {
    status = "Enabled"
  }
}

data "aws_iam_policy_document" "tls_only" {
  for_each = local.buckets
  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [each.value.arn, "${each.value.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "tls_only" {
  for_each = local.buckets
  bucket   = each.value.id
  policy   = data.aws_iam_policy_document.tls_only[each.key].json
  # S3 refuses a bucket policy while the public access block is being written.
  depends_on = [aws_s3_bucket_public_access_block.all]
}

# The original system's rules: CSVs tier down, scratch data expires.
resource "aws_s3_bucket_lifecycle_configuration" "input" {
  bucket     = aws_s3_bucket.input.id
  depends_on = [aws_s3_bucket_versioning.input]

  dynamic "rule" {
    # CSVs under the CSV prefix, CSVs posted to the API (api-uploads/, outside the CSV
    # prefix so no S3 event plans them twice) and processed CSVs (archived/, see
    # service/fanout.py): the same tiering.
    for_each = {
      "csv-files-tiering"   = var.csv_prefix
      "api-uploads-tiering" = "api-uploads/"
      "archived-tiering"    = "archived/"
    }
    content {
      id     = rule.key
      status = "Enabled"
      filter {
        prefix = rule.value
      }
      transition {
        days          = 30
        storage_class = "STANDARD_IA"
      }
      transition {
        days          = 90
        storage_class = "GLACIER"
      }
      transition {
        days          = 365
        storage_class = "DEEP_ARCHIVE"
      }
    }
  }

  rule {
    id     = "processing-expiry"
    status = "Enabled"
    filter {
      prefix = "processing/"
    }
    expiration {
      days = 7
    }
  }

  rule {
    id     = "old-versions-and-uploads"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
    expiration {
      expired_object_delete_marker = true
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "output" {
  bucket     = aws_s3_bucket.output.id
  depends_on = [aws_s3_bucket_versioning.output]

  rule {
    id     = "old-versions-and-uploads"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
    expiration {
      expired_object_delete_marker = true
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "temp" {
  bucket = aws_s3_bucket.temp.id

  rule {
    id     = "processing-expiry"
    status = "Enabled"
    filter {
      prefix = "processing/"
    }
    expiration {
      days = 7
    }
  }

  rule {
    id     = "abort-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

# S3 suffix filters are case-sensitive: .csv and .CSV are two notifications. Images
# need no suffix rule: the handler takes .jpg/.JPG/.png/.webp alike and ignores other
# keys in milliseconds; output goes to compressed/, never back under the prefix.
resource "aws_s3_bucket_notification" "input" {
  bucket = aws_s3_bucket.input.id

  lambda_function {
    id                  = "csv-upload"
    lambda_function_arn = aws_lambda_function.planner.arn
    events              = ["s3:ObjectCreated:*"]
    filter_prefix       = var.csv_prefix
    filter_suffix       = ".csv"
  }

  lambda_function {
    id                  = "csv-upload-upper-case"
    lambda_function_arn = aws_lambda_function.planner.arn
    events              = ["s3:ObjectCreated:*"]
    filter_prefix       = var.csv_prefix
    filter_suffix       = ".CSV"
  }

  lambda_function {
    id                  = "image-upload"
    lambda_function_arn = aws_lambda_function.compress.arn
    events              = ["s3:ObjectCreated:*"]
    filter_prefix       = var.compress_prefix
  }

  # S3 checks that it may invoke the functions when the notification is written.
  depends_on = [aws_lambda_permission.planner_s3, aws_lambda_permission.compress_s3]
}

resource "aws_lambda_permission" "planner_s3" {
  statement_id   = "CsvUpload"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.planner.function_name
  principal      = "s3.amazonaws.com"
  source_arn     = aws_s3_bucket.input.arn
  source_account = local.account
}

resource "aws_lambda_permission" "compress_s3" {
  statement_id   = "ImageUpload"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.compress.function_name
  principal      = "s3.amazonaws.com"
  source_arn     = aws_s3_bucket.input.arn
  source_account = local.account
}
