"""The architectures, seeds and training settings of the stability study, per profile; running it.

A `Run` is one `launch.train` invocation: a registry model (`experiments.models`) at a width,
a seed, and the settings it overrides (`experiments.settings`, which `launch.train` takes as
flags of the same names), trained into `<root>/<model>/seed<k>`. `run_grid` trains the runs in
this process through the same `experiments.settings.build_run` / `experiments.training.train`
path as `launch.train` (so a run trained here and one started with `Run.command()` on a cluster
write the same files), skipping runs that finished (their final.json exists).

Profiles (`PROFILES`; each function's docstring says what it runs and how it was sized):
  micro     two tiny nets, 2 steps, 1 seed: the tests' end-to-end check.
  quick     the embedded Fashion-MNIST subset, 10 architectures x 3 seeds, on 2 CPU cores.
  standard  the full Fashion-MNIST, 11 architectures x 3 seeds, under 2 hours on 2 CPU cores.
  paper     CIFAR-10 with Petrini et al.'s training settings, as commands for a cluster.
"""

import dataclasses
import os
import time
from typing import Optional

from absl import logging
import keras

from experiments import models as registry
from experiments import run_dir as run_files
from experiments import settings as settings_lib
from experiments import training
from pipelines import idx

LAUNCHER = "launch.train"
EXPERIMENT = "train"


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A registry model at a width option (None: the model's default)."""

    model: str
    width: Optional[float] = None

    @property
    def kind(self):
        return registry.get(self.model).kind


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of the grid: `<model>/seed<k>` under the study's root."""

    model: str
    seed: int
    settings: dict  # launch.train's settings (flag names), None values left out of commands

    @property
    def name(self):
        return f"{self.model}/seed{self.seed}"

    @property
    def kind(self):
        return registry.get(self.model).kind

    def flags(self):
        """The run's settings as launch.train flags ("--key=value", sorted), None left out."""
        return settings_lib.as_flags(self.settings)

    def command(self, root):
        """The equivalent launcher command line."""
        return " ".join([f"python -m {LAUNCHER}",
                         f"--output_dir={os.path.join(root, self.name)}", *self.flags()])


@dataclasses.dataclass(frozen=True)
class Profile:
    """Architectures, seeds and training settings of a profile (see the functions below).

    `data_dir`: where the profile's data are when the user gives none (the quick profile: the
    embedded Fashion-MNIST subset), None: the data set's standard locations. `allow_embedded`:
    whether it may train on the embedded subset (the launcher refuses it otherwise).
    `bn_recalibration_batches`: training batches whose statistics replace the batch norms'
    moving averages after training (`deform_tf.batch_norm`); short runs need it: MobileNetV2's
    moving averages (momentum 0.999) are far from its batch statistics after a few hundred
    steps, and it then classifies at chance in inference mode.
    """

    name: str
    dataset: str
    architectures: tuple
    seeds: int
    batch_size: int
    learning_rate: float
    train_steps: Optional[int] = None
    epochs: Optional[int] = None
    weight_decay: float = 5e-4
    num_measure_images: int = 64
    max_train_examples: Optional[int] = None
    bn_recalibration_batches: int = 0
    data_dir: Optional[str] = None
    allow_embedded: bool = True

    @property
    def title(self):
        data = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}.get(self.dataset,
                                                                          self.dataset)
        length = (f"{self.train_steps} steps" if self.train_steps is not None
                  else f"{self.epochs} epochs")
        return (f"{self.name} profile: {data}, {len(self.architectures)} architectures x "
                f"{self.seeds} seeds, {length} of batch {self.batch_size}, peak learning rate "
                f"{self.learning_rate:g}")


# The quick profile's nets: every kind the registry trains on 32 x 32 images.
QUICK_ARCHITECTURES = (
    Architecture("fc2"), Architecture("fc4"), Architecture("fc6"), Architecture("lenet"),
    Architecture("vgg_mnist_max_pool", 0.125), Architecture("vgg_mnist_avg_pool", 0.125),
    Architecture("vgg_mnist_strided", 0.125), Architecture("vgg_mnist_subsample", 0.125),
    Architecture("resnet18", 0.125), Architecture("mobilenet_v2_035"),
)


def micro():
    """Two tiny nets (LeNet, the paper's MNIST VGG at width 1/16), 1 seed, 2 steps: the
    tests' end-to-end check (under a minute)."""
    return Profile("micro", "fashion_mnist",
                   (Architecture("lenet"), Architecture("vgg_mnist_strided", 0.0625)),
                   seeds=1, batch_size=16, learning_rate=0.02, train_steps=2,
                   num_measure_images=8, max_train_examples=256, bn_recalibration_batches=2,
                   data_dir=idx.EMBEDDED_FASHION_MNIST_DIR)


def quick():
    """The embedded Fashion-MNIST subset (4,000 / 1,000 images), 10 architectures x 3 seeds.

    fc2, fc4, fc6 (64 units), LeNet, the paper's MNIST VGG with four downsamplings at width
    0.125, ResNet-18 at width 0.125 and MobileNetV2 (alpha 0.35; grayscale given as RGB), 500
    steps of batch 64 (8 epochs) at a peak learning rate of 0.02 with cosine decay, batch-norm
    statistics recomputed from 50 batches after training, N = 64 measured images.
    EfficientNet-B0 is left to the standard and paper profiles: it learns slowly (test
    accuracy 0.40 after 150 steps) and a step costs as much as ten of the VGG's at width 0.125.

    Sizing (2026-12-07, 2 CPU cores): with 2 seeds of 500 steps the profile took 8 min 54 s
    with the standard profile running beside it (every net learned: test error 0.13-0.20); a
    third seed makes the intervals over seeds of claim (a) usable. LeNet diverged at a learning
    rate of 0.05 (seed 1, test error 0.9), which 0.02 avoids.
    """
    return Profile("quick", "fashion_mnist", QUICK_ARCHITECTURES, seeds=3, batch_size=64,
                   learning_rate=0.02, train_steps=500, num_measure_images=64,
                   bn_recalibration_batches=50, data_dir=idx.EMBEDDED_FASHION_MNIST_DIR)


def standard():
    """The full Fashion-MNIST (60,000 / 10,000 images), 11 architectures x 3 seeds.

    The quick profile's nets plus EfficientNet-B0, 2,820 steps of batch 64 (3 epochs) at a peak
    learning rate of 0.02 with cosine decay, batch-norm statistics recomputed from 50 batches
    after training, N = 128 measured images.

    Sizing (2026-12-07, 2 CPU cores, with a test run beside it): one epoch (940 steps) of all
    ten quick-profile nets for one seed, with evaluating the 10,000 test images and measuring,
    took 7 min 20 s, and reached test accuracies of 0.84-0.89; EfficientNet-B0 trained at about
    210 examples a second (0.3 s a step). Three epochs of the eleven nets for three seeds come
    to about 75 minutes on a quiet machine. The profile's first full run took 1 h 48 min 50 s
    with other jobs on the two cores for most of it (7,233 s of CPU time).
    """
    return Profile("standard", "fashion_mnist",
                   QUICK_ARCHITECTURES + (Architecture("efficientnet_b0"),), seeds=3,
                   batch_size=64, learning_rate=0.02, train_steps=2820, num_measure_images=128,
                   bn_recalibration_batches=50, allow_embedded=False)


def paper():
    """CIFAR-10 with Petrini et al.'s training settings, for a cluster (`--print_commands`).

    Their code's defaults (diffeo-sota, main.py): SGD with momentum 0.9, learning rate 0.1 with
    cosine annealing over 200 epochs, weight decay 5e-4, batch 128, random horizontal flips.
    Here 200 epochs, so the cosine ends at 0 (their runs went on to 250 epochs with T_max =
    200, the rate rising again after 200, and they report the best test accuracy over epochs;
    here it is the last). Other differences: launch.train's CIFAR-10 pipeline also pads by 4
    pixels and crops at random (their default has no crop), their weight decay is an L2 term on
    every parameter (here decoupled, and not on biases or batch norms), and the nets are the
    registry's versions at full width (MobileNetV2 at alpha 1), 5 seeds.
    """
    full_width = {"mobilenet_v2_035": "mobilenet_v2"}  # Petrini et al. trained MobileNetV2
    archs = tuple(Architecture(full_width.get(a.model, a.model)) for a in QUICK_ARCHITECTURES
                  if not a.model.startswith("vgg_mnist"))
    archs += tuple(Architecture(f"vgg_cifar10_{d}") for d in
                   ("max_pool", "avg_pool", "strided", "subsample"))
    archs += (Architecture("efficientnet_b0"),)
    return Profile("paper", "cifar10", archs, seeds=5, batch_size=128, learning_rate=0.1,
                   epochs=200, num_measure_images=128, allow_embedded=False)


PROFILES = {p.name: p for p in (micro(), quick(), standard(), paper())}


def grid(profile, data_dir=None):
    """The runs of a profile, seed-major (every architecture at seed 0 first).

    `data_dir`: the data set's directory; None = the profile's `data_dir`.
    """
    base = dict(dataset=profile.dataset, data_dir=data_dir or profile.data_dir,
                batch_size=profile.batch_size, learning_rate=profile.learning_rate,
                weight_decay=profile.weight_decay, train_steps=profile.train_steps,
                epochs=profile.epochs, warmup_epochs=0.0, measure_every=0,
                num_measure_images=profile.num_measure_images,
                max_train_examples=profile.max_train_examples)
    if profile.bn_recalibration_batches:
        base["bn_recalibration_batches"] = profile.bn_recalibration_batches
    return [Run(arch.model, seed, dict(base, model=arch.model, width=arch.width, seed=seed))
            for seed in range(profile.seeds) for arch in profile.architectures]


def run_dir(run, root):
    return os.path.join(root, run.name)


def is_finished(run, root):
    return os.path.exists(os.path.join(run_dir(run, root), run_files.FINAL_FILE))


def execute(run, root):
    """Trains one run in this process (launch.train's code path); returns final.json's dict."""
    settings = settings_lib.default_settings(EXPERIMENT)
    settings.update(run.settings)
    if settings["epochs"] is not None:
        settings["train_steps"] = None
    config, data = settings_lib.build_run(EXPERIMENT, settings)
    try:
        return training.train(config, data, run_dir(run, root))
    finally:
        keras.backend.clear_session()


def run_grid(runs, root, after_run=None, progress=logging.info):
    """Trains the unfinished runs, logging runs done / total and an ETA.

    after_run: None or fn(run, run directory), called after every run, finished before or not
    (the study measures the run there).
    """
    todo = [r for r in runs if not is_finished(r, root)]
    if len(todo) < len(runs):
        progress(f"{len(runs) - len(todo)} of {len(runs)} runs already finished in {root}; "
                 "skipping their training.")
    started = time.time()
    trained = 0
    for k, run in enumerate(runs, start=1):
        if not is_finished(run, root):
            progress(f"[{k}/{len(runs)}] training {run.name}")
            execute(run, root)
            trained += 1
        if after_run is not None:
            after_run(run, run_dir(run, root))
        elapsed = time.time() - started
        left = sum(1 for r in runs[k:] if not is_finished(r, root))
        eta = elapsed / max(trained, 1) * left
        progress(f"[{k}/{len(runs)}] {run.name} done; {elapsed:.0f} s so far, ETA {eta:.0f} s")
