"""Use cases: one creator's pipeline, whole batches."""
