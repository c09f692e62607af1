"""The README's usage example runs as written, and no text in the repository points outside it."""

import contextlib
import io
import os
import re
import subprocess
import warnings

import numpy as np
import tensorflow as tf

from deform_tf import profile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
# A methods document that lives outside the repository; docs/method.md replaces it.
OUTSIDE_DOCUMENT = re.compile(r"\b" + "S" + r"PEC\b")


class ReadmeTest(tf.test.TestCase):

    def test_usage_example_runs(self):
        with open(README) as f:
            blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
        self.assertNotEmpty(blocks)
        namespace, printed = {}, io.StringIO()
        with warnings.catch_warnings(record=True) as caught, \
                contextlib.redirect_stdout(printed):
            warnings.simplefilter("always")
            exec(compile(blocks[0], "README.md", "exec"), namespace)  # pylint: disable=exec-used
        result = namespace["result"]
        self.assertLen(result["sensitivity"], 13)
        self.assertEqual(namespace["deformed"].shape, (16, 32, 32, 3))
        self.assertEqual(namespace["warped"].shape, (16, 32, 32, 3))
        # No NaN and no numpy warning: an undefined point is said as such, once.
        self.assertNotRegex(printed.getvalue(), r"(?i)\bnan\b")
        self.assertIn("How to read", printed.getvalue())
        self.assertEmpty([w for w in caught if issubclass(w.category, RuntimeWarning)])
        for row in namespace["rows"]:
            for key in profile.MEASURES:
                value = getattr(row, key)
                self.assertTrue(value is None or np.isfinite(value), (row.point.name, key))
            self.assertEqual(row.note == "", row.relative_stability is not None, row.point.name)


    def tracked_text_files(self):
        """{path: text} of every tracked UTF-8 file (skips outside a git checkout)."""
        try:
            listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                                    check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            self.skipTest("not a git checkout (e.g. a Bazel sandbox): no list of tracked files")
        texts = {}
        for name in listed.decode().split("\0"):
            path = os.path.join(REPO, name)
            if name and os.path.isfile(path):
                with open(path, "rb") as f:
                    try:
                        texts[name] = f.read().decode("utf-8")
                    except UnicodeDecodeError:
                        continue  # binary (images, data)
        return texts

    def test_no_tracked_text_points_outside_the_repository(self):
        offending = [f"{name}:{k}" for name, text in self.tracked_text_files().items()
                     for k, line in enumerate(text.splitlines(), start=1)
                     if OUTSIDE_DOCUMENT.search(line)]
        self.assertEmpty(offending, "point to docs/method.md instead")

    def test_pointers_to_the_method_document_name_its_sections(self):
        with open(os.path.join(REPO, "docs", "method.md")) as f:
            # GitHub's anchors: lower case, punctuation dropped, spaces as hyphens.
            sections = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                        for h in re.findall(r"^## (.+)$", f.read(), re.M)}
        self.assertContainsSubset({"deformation", "sensitivity", "smoothness", "models", "data",
                                   "choices", "findings"}, sections)
        pointers = {(name, anchor) for name, text in self.tracked_text_files().items()
                    for anchor in re.findall(r"method\.md#([\w-]+)", text)}
        self.assertNotEmpty(pointers)
        self.assertEmpty({p for p in pointers if p[1] not in sections})


if __name__ == "__main__":
    tf.test.main()
