"""The README's usage example runs as written (so the documentation cannot rot)."""

import os
import re

import tensorflow as tf

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


class ReadmeTest(tf.test.TestCase):

    def test_usage_example_runs(self):
        with open(README) as f:
            blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
        self.assertNotEmpty(blocks)
        namespace = {}
        exec(compile(blocks[0], "README.md", "exec"), namespace)  # pylint: disable=exec-used
        result = namespace["result"]
        self.assertLen(result["sensitivity"], 13)
        self.assertEqual(namespace["deformed"].shape, (16, 32, 32, 3))
        self.assertEqual(namespace["warped"].shape, (16, 32, 32, 3))


if __name__ == "__main__":
    tf.test.main()
