"""pytest configuration: quiet TensorFlow logs and drop tf.test.TestCase's `test_session`.

`tf.test.TestCase.test_session` is a deprecated context manager that pytest collects as a test
and reports as skipped; it tests nothing of ours.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(config, items):
    del config
    items[:] = [item for item in items if item.name != "test_session"]
