"""Tests of the reference nets: parameter counts from their formulas, shapes, measured points."""

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from deform_tf import reference_models
from deform_tf import representations


def _dense(inputs, units):
    """Weights of a dense layer with bias."""
    return inputs * units + units


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _fc_count(depth, width, inputs, classes):
    """Petrini et al.'s FullConn-L<depth>: depth - 1 hidden layers of `width`, then the logits."""
    if depth == 1:
        return _dense(inputs, classes)
    return (_dense(inputs, width) + (depth - 2) * _dense(width, width) +
            _dense(width, classes))


def _lenet_count(height, channels, classes, c1=6, c2=16, f1=120, f2=84):
    """Two valid 5x5 convolutions (with bias), each followed by a 2x2 pool, then three dense."""
    size = ((height - 4) // 2 - 4) // 2
    return (_dense(25 * channels, c1) + _dense(25 * c1, c2) + _dense(size * size * c2, f1) +
            _dense(f1, f2) + _dense(f2, classes))


def _resnet18_counts(channels, classes, widths):
    """(trainable, non-trainable) weights: 3x3 convolutions without bias, batch norms with
    gamma, beta (trainable) and the moving mean and variance, 1x1 projections where the size or
    channels change, the logits."""
    trainable = 9 * channels * widths[0] + 2 * widths[0]
    moving = 2 * widths[0]
    previous = widths[0]
    for stage, out in enumerate(widths):
        for block in range(2):
            trainable += 9 * previous * out + 9 * out * out + 4 * out
            moving += 4 * out
            if (stage > 0 and block == 0) or previous != out:
                trainable += previous * out + 2 * out
                moving += 2 * out
            previous = out
    return trainable + _dense(widths[-1], classes), moving


def _points(model):
    return representations.representation_model(model).points


class FullyConnectedTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters((1, 5), (2, 7), (4, 7), (6, 3))
    def test_parameter_count_and_output(self, depth, width):
        model = reference_models.fully_connected(depth, width, input_shape=(6, 5, 2),
                                                 num_classes=4, seed=1)
        self.assertEqual(model.count_params(), _fc_count(depth, width, 6 * 5 * 2, 4))
        self.assertEqual(model.name, f"fc{depth}")
        self.assertEqual(model(np.zeros((3, 6, 5, 2), np.float32)).shape, (3, 4))

    def test_measured_points_hidden_layers_and_logits(self):
        model = reference_models.fully_connected(4, 3, input_shape=(4, 4, 1), num_classes=2)
        points = _points(model)
        self.assertEqual([p.name for p in points],
                         ["input", "fc1_relu", "fc2_relu", "fc3_relu", "logits"])
        self.assertEqual([(p.height, p.width, p.channels) for p in points],
                         [(4, 4, 1), (1, 1, 3), (1, 1, 3), (1, 1, 3), (1, 1, 2)])
        # flatten, then dense and ReLU per hidden layer, then the logits: 8 calls deep.
        self.assertAllClose([p.relative_depth for p in points], [0, 3 / 8, 5 / 8, 7 / 8, 1])

    def test_seed_fixes_every_weight_and_layers_differ(self):
        build = lambda seed: reference_models.fully_connected(3, 4, (3, 3, 1), 2, seed=seed)
        a, b, c = build(5), build(5), build(6)
        for wa, wb, wc in zip(a.get_weights(), b.get_weights(), c.get_weights()):
            self.assertAllEqual(wa, wb)
            if wa.ndim == 2:  # kernels (biases start at zero)
                self.assertNotAllClose(wa, wc)
        # Each layer its own seed: the two 4 x 4 hidden kernels differ.
        self.assertNotAllClose(a.get_layer("fc2").kernel, a.get_layer("fc1").kernel[:4])

    def test_he_normal_initialization(self):
        # stddev sqrt(2 / fan_in) (fan_in 400), drawn from a normal of std sqrt(2 / 400) / 0.8796
        # truncated at 2 of its std (Keras' compensated truncated normal).
        model = reference_models.fully_connected(2, 400, (20, 20, 1), 2, seed=0)
        kernel = model.get_layer("fc1").kernel.numpy()
        self.assertAllClose(kernel.std(), np.sqrt(2 / 400), rtol=0.02)
        self.assertLessEqual(np.abs(kernel).max(), 2 * np.sqrt(2 / 400) / 0.87962566)
        self.assertAllEqual(model.get_layer("fc1").bias, np.zeros(400))

    @parameterized.parameters((0, 4), (2, 0), (2, 1.5))
    def test_bad_depth_or_width(self, depth, width):
        with self.assertRaisesRegex(ValueError, "`depth`|`width`"):
            reference_models.fully_connected(depth, width)


class LeNetTest(parameterized.TestCase, tf.test.TestCase):

    def test_lenet5_parameter_count(self):
        model = reference_models.lenet((32, 32, 3), 10)
        self.assertEqual(model.count_params(), _lenet_count(32, 3, 10))
        self.assertEqual(model.count_params(), 62006)  # the usual CIFAR-10 LeNet's figure

    def test_width_and_grayscale(self):
        model = reference_models.lenet((28, 28, 1), 7, width=0.5, seed=0)
        self.assertEqual(model.count_params(), _lenet_count(28, 1, 7, 3, 8, 60, 42))
        self.assertEqual(model(np.zeros((2, 28, 28, 1), np.float32)).shape, (2, 7))

    def test_measured_points(self):
        points = _points(reference_models.lenet((32, 32, 1), 10, width=0.5))
        self.assertEqual([p.name for p in points], [
            "input", "conv1_relu", "pool1", "conv2_relu", "pool2", "fc1_relu", "fc2_relu",
            "logits"])
        self.assertEqual([p.height for p in points], [32, 28, 14, 10, 5, 1, 1, 1])
        self.assertEqual([p.channels for p in points], [1, 3, 3, 8, 8, 60, 42, 10])

    def test_too_small(self):
        with self.assertRaisesRegex(ValueError, "at least 16 pixels"):
            reference_models.lenet((15, 32, 1), 10)


class ResNet18Test(parameterized.TestCase, tf.test.TestCase):

    def test_cifar_resnet18_parameter_count(self):
        model = reference_models.resnet18((32, 32, 3), 10)
        trainable, moving = _resnet18_counts(3, 10, (64, 128, 256, 512))
        self.assertEqual(_trainable(model), trainable)
        self.assertEqual(trainable, 11173962)  # the CIFAR-10 ResNet-18's published figure
        self.assertEqual(model.count_params(), trainable + moving)

    def test_width_multiplier_counts_and_points(self):
        model = reference_models.resnet18((16, 12, 1), 5, width=1 / 16, seed=3)
        trainable, moving = _resnet18_counts(1, 5, (4, 8, 16, 32))
        self.assertEqual(model.count_params(), trainable + moving)
        points = _points(model)
        blocks = [f"stage{s}_block{b}_{o}" for s in range(1, 5) for b in (1, 2)
                  for o in ("relu1", "out")]
        self.assertEqual([p.name for p in points], ["input", "stem_relu"] + blocks + ["logits"])
        self.assertEqual([(p.height, p.width) for p in points[2:-1:4]],
                         [(16, 12), (8, 6), (4, 3), (2, 2)])  # each stage's first relu1
        self.assertEqual(model(np.zeros((2, 16, 12, 1), np.float32)).shape, (2, 5))

    def test_strided_branch_and_shortcut_sample_the_same_pixels(self):
        # With 1 channel, identity-like kernels (centre tap 1) and batch norms at identity, the
        # strided 3x3 branch and the 1x1 shortcut of a downsampling block must both read pixel
        # (2i, 2j): the padded stride-2 convolution is centred on it, as PyTorch's padding=1.
        model = reference_models.resnet18((8, 8, 1), 2, width=1 / 64)
        block = keras.Model(model.get_layer("stage2_block1_pad").input,
                            [model.get_layer("stage2_block1_conv1").output,
                             model.get_layer("stage2_block1_shortcut_conv").output])
        centre = np.zeros((3, 3, 1, 2), np.float32)
        centre[1, 1] = 1.0
        model.get_layer("stage2_block1_conv1").kernel.assign(centre)
        model.get_layer("stage2_block1_shortcut_conv").kernel.assign(np.ones((1, 1, 1, 2)))
        x = np.arange(64, dtype=np.float32).reshape(1, 8, 8, 1)
        strided, shortcut = block(x)
        self.assertAllEqual(strided[0, :, :, 0], x[0, ::2, ::2, 0])
        self.assertAllEqual(shortcut[0, :, :, 0], x[0, ::2, ::2, 0])


if __name__ == "__main__":
    tf.test.main()
