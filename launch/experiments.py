"""The experiment grid behind the paper's figures, per profile, and running it.

A `Run` is one training launcher invocation: the launcher module, the settings it overrides
(flag names of `launch.common`), and its output sub-directory. `run_grid` executes runs in this
process through the same `common.build_run` / `train_lib.train` path as the launchers (so a run
started here and one started with `Run.command()` on a cluster write the same files), skipping
runs that finished (their `final.json` exists) and resuming interrupted ones.

Profiles:
  micro  tiny models, a handful of steps, 2 seeds: the tests' end-to-end check (a minute).
  quick  Fashion-MNIST (the embedded subset unless a full copy is found) on the CIFAR-10 net
         at width 0.125, 150 steps, 3 seeds: minutes on 2 CPU cores.
  paper  the paper's settings: CIFAR-10 (5 variants x 5 seeds, real and random labels, the
         smooth-init sweep), the synthetic task C = 1..4 (5 seeds), ImageNet max_pool vs
         strided_relu (2 seeds); for a cluster, e.g. via --print_commands.
"""

import dataclasses
import importlib
import os
import time
from typing import Optional

from absl import logging
import keras

from deform_tf import models
from launch import common
from launch import train_lib

SIGMAS = (0.0, 0.5, 1.0, 2.0)
STRENGTHS = (1.0, 2.0, 3.0, 4.0)


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of the grid."""

    name: str  # output sub-directory, "<group>/<condition>/seed<k>"
    group: str  # "real", "random", "smooth_init", "synthetic" or "imagenet"
    condition: str  # downsampling variant, sigma or strength
    seed: int
    launcher: str  # module, e.g. "launch.cifar10"
    settings: dict  # overrides of the launcher's settings (flag names)
    spec_fields: dict = dataclasses.field(default_factory=dict)  # launcher-specific flags

    def command(self, root):
        """The equivalent launcher command line."""
        args = [f"python -m {self.launcher}", f"--output_dir={os.path.join(root, self.name)}"]
        for key, value in sorted({**self.settings, **self.spec_fields}.items()):
            if isinstance(value, bool):
                args.append(f"--{key}" if value else f"--no{key}")
            elif value is not None:
                args.append(f"--{key}={value}")
        return " ".join(args)


@dataclasses.dataclass(frozen=True)
class Profile:
    """Grid sizes and training settings of a profile."""

    name: str
    dataset: str
    width: float
    batch_size: int
    train_steps: Optional[int]  # None: the launcher's epochs
    seeds: int
    measure_every: int
    num_measure_images: int
    learning_rate: float
    variants: tuple = models.DOWNSAMPLING
    sigmas: tuple = SIGMAS
    strengths: tuple = STRENGTHS
    synthetic_steps: int = 150
    max_train_examples: Optional[int] = None
    imagenet_seeds: int = 0
    data_dir: Optional[str] = None

    @property
    def title(self):
        data = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}.get(self.dataset,
                                                                          self.dataset)
        steps = f"{self.train_steps} steps" if self.train_steps else "the launcher's epochs"
        return (f"{self.name} profile: {data}, CIFAR-10 net at width {self.width:g}, {steps}, "
                f"{self.seeds} seeds")


PROFILES = {
    "micro": Profile("micro", "fashion_mnist", width=0.0625, batch_size=16, train_steps=4,
                     seeds=2, measure_every=2, num_measure_images=8, learning_rate=0.02,
                     variants=("max_pool", "strided"), sigmas=(0.0, 1.0), strengths=(1.0, 3.0),
                     synthetic_steps=4, max_train_examples=256),
    "quick": Profile("quick", "fashion_mnist", width=0.125, batch_size=64, train_steps=150,
                     seeds=3, measure_every=50, num_measure_images=64, learning_rate=0.05),
    "paper": Profile("paper", "cifar10", width=1.0, batch_size=128, train_steps=None,
                     seeds=5, measure_every=2000, num_measure_images=128, learning_rate=0.05,
                     synthetic_steps=5000, imagenet_seeds=2),
}


def grid(profile, data_dir=None, imagenet_dir=None):
    """The runs of a profile, in execution order (cheap groups first)."""
    base = dict(dataset=profile.dataset, data_dir=data_dir or profile.data_dir,
                width=profile.width, batch_size=profile.batch_size,
                train_steps=profile.train_steps, learning_rate=profile.learning_rate,
                measure_every=profile.measure_every,
                num_measure_images=profile.num_measure_images,
                max_train_examples=profile.max_train_examples,
                checkpoint_every=max(profile.measure_every, 1))
    if profile.train_steps is not None:
        base["warmup_epochs"] = 0.0
    runs = []
    seeds = range(profile.seeds)
    for sigma in profile.sigmas:
        for seed in seeds:
            runs.append(Run(f"smooth_init/sigma{sigma:g}/seed{seed}", "smooth_init", f"{sigma:g}",
                            seed, "launch.cifar10",
                            dict(base, seed=seed, downsampling="max_pool",
                                 smooth_init_sigma=sigma, train_steps=0)))
    for group, random_labels in (("real", False), ("random", True)):
        for variant in profile.variants:
            for seed in seeds:
                runs.append(Run(f"{group}/{variant}/seed{seed}", group, variant, seed,
                                "launch.cifar10",
                                dict(base, seed=seed, downsampling=variant,
                                     random_labels=random_labels)))
    for strength in profile.strengths:
        for seed in seeds:
            settings = {k: v for k, v in base.items() if k not in ("dataset", "max_train_examples")}
            runs.append(Run(f"synthetic/C{strength:g}/seed{seed}", "synthetic", f"{strength:g}",
                            seed, "launch.synthetic_mnist",
                            dict(settings, seed=seed, downsampling="max_pool",
                                 train_steps=profile.synthetic_steps),
                            dict(synthetic_strength=strength)))
    for variant in ("max_pool", "strided_relu"):
        for seed in range(profile.imagenet_seeds):
            runs.append(Run(f"imagenet/{variant}/seed{seed}", "imagenet", variant, seed,
                            "launch.imagenet",
                            dict(seed=seed, downsampling=variant, data_dir=imagenet_dir,
                                 measure_every=10000)))
    return runs


def is_finished(run, root):
    return os.path.exists(os.path.join(root, run.name, "final.json"))


def execute(run, root):
    """Trains one run in this process (same code path as its launcher); returns final.json."""
    launcher = importlib.import_module(run.launcher)
    settings = common.default_settings(launcher.DEFAULTS)
    settings.update(run.settings)
    config, data = common.build_run(launcher.EXPERIMENT, settings, run.spec_fields or None)
    try:
        return train_lib.train(config, data, os.path.join(root, run.name))
    finally:
        keras.backend.clear_session()


def run_grid(runs, root, progress=logging.info):
    """Executes the unfinished runs; logs runs done / total and an ETA."""
    todo = [r for r in runs if not is_finished(r, root)]
    done = len(runs) - len(todo)
    if done:
        progress(f"{done} of {len(runs)} runs already finished in {root}; skipping them.")
    started = time.time()
    for k, run in enumerate(todo, start=1):
        progress(f"[{done + k - 1}/{len(runs)}] {run.name}")
        execute(run, root)
        elapsed = time.time() - started
        eta = elapsed / k * (len(todo) - k)
        progress(f"[{done + k}/{len(runs)}] {run.name} done; {elapsed:.0f} s so far, "
                 f"ETA {eta:.0f} s")
