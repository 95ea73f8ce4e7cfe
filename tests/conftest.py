"""Fixtures shared across test folders (moto server for the AWS paths).

Hypothesis runs derandomised: the examples follow from each test's source, so a
failure on one machine fails the same way on every rerun and in CI. To explore
new examples locally, set ``HYPOTHESIS_PROFILE=explore``.
"""

import os

from hypothesis import settings

pytest_plugins = ["tests.support.aws", "tests.support.aws_deploy", "tests.support.mariadb"]

settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
