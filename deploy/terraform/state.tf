# The layout of dynamodb_table.create_state_table.
resource "aws_dynamodb_table" "state" {
  #checkov:skip=CKV_AWS_119:Encrypted with the AWS managed key; a customer managed key adds key administration and cost without a consumer that needs it.
  name                        = var.table_name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "creator_name"
  range_key                   = "processing_date"
  deletion_protection_enabled = true

  attribute {
    name = "creator_name"
    type = "S"
  }
  attribute {
    name = "processing_date"
    type = "S"
  }
  attribute {
    name = "batch_id"
    type = "S"
  }
  attribute {
    name = "status"
    type = "S"
  }
  attribute {
    name = "open_batch"
    type = "S"
  }

  global_secondary_index {
    name            = "batch-id-index"
    hash_key        = "batch_id"
    range_key       = "processing_date"
    projection_type = "ALL"
  }
  global_secondary_index {
    name            = "status-date-index"
    hash_key        = "status"
    range_key       = "processing_date"
    projection_type = "ALL"
  }
  # Sparse: only batches not yet settled carry open_batch (the sweep's read). Keys
  # only, so a finishing creator's counter update never writes to it.
  global_secondary_index {
    name            = "open-batch-index"
    hash_key        = "open_batch"
    range_key       = "processing_date"
    projection_type = "KEYS_ONLY"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }
}
