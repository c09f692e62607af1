"""Tests of experiments.training's learning-rate schedules and optimizers against hand-computed
values.

The oracles are the schedules' formulas written out in float64 numpy and the SGD-with-momentum and
AdamW update rules applied by hand; none of them calls the code under test.
"""

import math
import types

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from experiments import training as train_lib


def _config(**overrides):
    config = dict(optimizer="sgd", learning_rate=0.4, train_steps=100, warmup_steps=0,
                  schedule="cosine", momentum=0.9, weight_decay=0.0, mixed_precision=False)
    config.update(overrides)
    return types.SimpleNamespace(**config)


def _expected_rate(kind, peak, total, warmup, step):
    """The schedule by hand: linear warmup (step + 1) / warmup, then the decay over the rest."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
    if kind == "cosine":
        return 0.5 * peak * (1 + math.cos(math.pi * progress))
    if kind == "step":
        return peak * (1.0 if progress < 0.5 else 0.1 if progress < 0.75 else 0.01)
    return peak


class ScheduleTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.product(kind=["cosine", "step", "constant"], warmup=[0, 10])
    def test_rate_at_every_step(self, kind, warmup):
        schedule = train_lib.WarmupSchedule(0.4, 90, warmup, kind)
        for step in range(0, 100):
            self.assertAllClose(float(schedule(step)),
                                _expected_rate(kind, 0.4, 90, warmup, step), rtol=1e-6,
                                atol=1e-7, msg=f"{kind} warmup={warmup} step={step}")

    def test_step_schedule_values(self):
        # 100 steps, no warmup: 0.4 for steps 0-49, 0.04 for 50-74, 0.004 from 75 on.
        schedule = train_lib.WarmupSchedule(0.4, 100, 0, "step")
        rates = [float(schedule(s)) for s in (0, 49, 50, 74, 75, 99, 150)]
        self.assertAllClose(rates, [0.4, 0.4, 0.04, 0.04, 0.004, 0.004, 0.004], rtol=1e-6)

    def test_warmup_reaches_the_peak_then_cosine_ends_at_zero(self):
        schedule = train_lib.WarmupSchedule(0.4, 110, 10, "cosine")
        self.assertAllClose([float(schedule(s)) for s in (0, 9, 10, 60, 110)],
                            [0.04, 0.4, 0.4, 0.2, 0.0], atol=1e-7)


class OptimizerTest(parameterized.TestCase, tf.test.TestCase):

    def _run(self, config, gradients, name="kernel"):
        optimizer, _ = train_lib.make_optimizer(config)
        variable = tf.Variable(np.array([1.0, -2.0, 0.5], np.float32), name=name)
        for gradient in gradients:
            optimizer.apply_gradients([(tf.constant(gradient, tf.float32), variable)])
        return variable.numpy().astype(np.float64)

    def test_sgd_momentum_with_weight_decay(self):
        config = _config(optimizer="sgd", schedule="constant", learning_rate=0.1,
                         momentum=0.9, weight_decay=0.01)
        gradients = [np.array([0.5, 0.25, -1.0]), np.array([0.1, -0.3, 0.2])]
        # Keras SGD: decoupled decay var -= lr * wd * var, then velocity = m v - lr g,
        # var += velocity.
        var, velocity = np.array([1.0, -2.0, 0.5]), np.zeros(3)
        for g in gradients:
            var = var - 0.1 * 0.01 * var
            velocity = 0.9 * velocity - 0.1 * g
            var = var + velocity
        self.assertAllClose(self._run(config, gradients), var, rtol=1e-6)

    @parameterized.parameters("kernel", "bias")
    def test_adamw_by_hand(self, name):
        config = _config(optimizer="adamw", schedule="cosine", learning_rate=0.01,
                         train_steps=4, weight_decay=0.05)
        gradients = [np.array([0.5, 0.25, -1.0]), np.array([0.1, -0.3, 0.2]),
                     np.array([-0.2, 0.05, 0.4])]
        decay = 0.05 if name == "kernel" else 0.0  # biases are excluded from weight decay
        var, m, v = np.array([1.0, -2.0, 0.5]), np.zeros(3), np.zeros(3)
        b1, b2, eps = 0.9, 0.999, 1e-7  # Keras' AdamW defaults
        for t, g in enumerate(gradients, start=1):
            lr = _expected_rate("cosine", 0.01, 4, 0, t - 1)
            var = var - lr * decay * var
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            step_size = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            var = var - step_size * m / (np.sqrt(v) + eps)
        self.assertAllClose(self._run(config, gradients, name), var, rtol=1e-5, atol=1e-7)


if __name__ == "__main__":
    tf.test.main()
