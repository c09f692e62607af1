"""Library messages on the command line: `launch.messages.as_flags` against hand-written flags."""

from absl.testing import parameterized
import tensorflow as tf

from launch import messages


class AsFlagsTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(
        ("Give `epochs` or `train_steps`.", "Give --epochs or --train_steps."),
        ("pass `overwrite=True` to move it aside", "pass --overwrite to move it aside"),
        ("or `resume=False`", "or --noresume"),
        ("`weights='none'`: no such file", "--weights=none: no such file"),
        ("`images='/data/x y'` holds 4 images", "--images=/data/x y holds 4 images"),
        ("`num_images=5` were asked for", "--num_images=5 were asked for"),
        ("no setting here: 3 `` ticks", "no setting here: 3 `` ticks"),
        ("Model `Lenet` stays", "Model `Lenet` stays"),  # not a setting name (capital)
    )
    def test_settings_become_flags(self, message, expected):
        self.assertEqual(messages.as_flags(message), expected)


if __name__ == "__main__":
    tf.test.main()
