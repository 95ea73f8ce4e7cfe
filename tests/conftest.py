"""Fixtures shared across test folders (moto server for the AWS paths)."""

pytest_plugins = ["tests.support.aws", "tests.support.aws_deploy"]
