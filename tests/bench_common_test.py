"""Tests of `bench.common`, the scaffolding of every benchmark: round-robin rounds, the timings'
medians, spreads and ratios against a stated baseline (with a fake clock), the tables, the
command line and the report."""

import importlib
import io
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from bench import common


class FakeClock:
    """A clock that advances only when told: `advance(seconds)`."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class RoundRobinTest(tf.test.TestCase):

    def test_each_round_takes_one_sample_of_every_entry_starting_one_later(self):
        calls = []
        samplers = [lambda k=k: calls.append(k) or k for k in "abc"]
        samples = common.round_robin(samplers, 4)
        self.assertEqual("".join(calls), "abc" + "bca" + "cab" + "abc")
        self.assertEqual(samples, [["a"] * 4, ["b"] * 4, ["c"] * 4])

    def test_a_sampler_may_return_several_samples_and_rounds_are_logged(self):
        logged = []
        samples = common.round_robin([lambda: [1.0, 2.0], lambda: 3.0], 2, logged.append,
                                     label="w: ")
        self.assertEqual(samples, [[1.0, 2.0, 1.0, 2.0], [3.0, 3.0]])
        self.assertEqual(logged, ["  w: round 1/2 done", "  w: round 2/2 done"])


class TimingsTest(tf.test.TestCase):

    def test_seconds_and_ratios_against_the_stated_baseline_with_a_fake_clock(self):
        clock = FakeClock()
        # Entry "slow" takes 3, 5, 4 s in its three rounds, "base" 2, 2, 1 s.
        durations = {"slow": iter([3.0, 5.0, 4.0]), "base": iter([2.0, 2.0, 1.0])}
        with mock.patch.object(common, "clock", clock):
            samplers = [lambda key=key: common.seconds(clock.advance, next(durations[key]))
                        for key in ("slow", "base")]
            samples = common.round_robin(samplers, 3)
        timings = common.Timings(dict(zip(("slow", "base"), samples)))
        self.assertEqual(timings.samples, {"slow": [3.0, 5.0, 4.0], "base": [2.0, 2.0, 1.0]})
        self.assertEqual(timings.median("slow"), 4.0)
        self.assertEqual(timings.ratio("slow", "base"), 2.0)  # medians 4 s / 2 s
        self.assertEqual(timings.ratio("base", "slow"), 0.5)
        self.assertEqual(timings.ratio("base", "base"), 1.0)
        self.assertTrue(np.isnan(timings.ratio("slow", "missing")))
        # numpy's linear percentiles of [3, 4, 5]: 3.5 and 4.5; IQR 1 over the median 4.
        self.assertEqual(timings.spread("slow"), 0.25)

    def test_calls_per_sample_fill_the_sample_time(self):
        self.assertEqual(common.calls_per_sample(0.05, 0.02), 3)
        self.assertEqual(common.calls_per_sample(0.05, 0.05), 1)
        self.assertEqual(common.calls_per_sample(0.0, 0.01), 1)
        self.assertEqual(common.calls_per_sample(1.0, 0.0), 1_000_000)  # 1 us at the least


class ReportTest(tf.test.TestCase):

    def test_markdown_table_aligns_numbers_right(self):
        self.assertEqual(common.markdown_table(("a", "b"), "lr", [("x", "1.5"), ("y", "2")]),
                         ["| a | b |", "|---|---:|", "| x | 1.5 |", "| y | 2 |"])

    def test_report_prints_title_machine_details_and_body(self):
        out = io.StringIO()
        with mock.patch("os.getloadavg", return_value=(1.25, 0.0, 0.0)):
            run = common.Run(quick=True)
        text = run.report("Title (bench.x)", ["detail"], ["| t |"], out)
        self.assertEqual(out.getvalue(), text + "\n")
        lines = text.splitlines()
        self.assertEqual(lines[:2], ["# Title (bench.x) -- QUICK smoke run", ""])
        self.assertTrue(lines[2].startswith("TF " + tf.__version__))
        self.assertTrue(lines[2].endswith("; 1-min load average at start 1.25"))
        self.assertEqual(lines[3:], ["detail", "", "| t |"])

    def test_log_prints_only_when_verbose(self):
        with mock.patch("sys.stderr", new_callable=io.StringIO) as err:
            common.Run(quick=False).log("quiet")
            common.Run(quick=False, verbose=True).log("said")
        self.assertEqual(err.getvalue(), "said\n")


class ArgumentParserTest(tf.test.TestCase):

    def parser(self):
        parser = common.ArgumentParser("bench.x", "First paragraph.\n\nMore.", "smoke run")
        parser.add_reps(2, 20)
        parser.add_min_sample_time(0.005, 0.05)
        return parser

    def test_defaults_follow_quick_and_given_values_win(self):
        args = self.parser().parse([])
        self.assertEqual((args.reps, args.min_sample_time, args.verbose), (20, 0.05, False))
        args = self.parser().parse(["--quick", "--verbose"])
        self.assertEqual((args.reps, args.min_sample_time, args.verbose), (2, 0.005, True))
        self.assertEqual(self.parser().parse(["--quick", "--reps=7"]).reps, 7)
        self.assertEqual(self.parser().prog, "python -m bench.x")
        self.assertEqual(self.parser().description, "First paragraph.")

    def test_bounds_are_refused_naming_the_flag(self):
        with mock.patch("sys.stderr", new_callable=io.StringIO) as err:
            with self.assertRaises(SystemExit) as exit_:
                self.parser().parse(["--reps=0"], at_least={"reps": 1})
        self.assertEqual(exit_.exception.code, 2)
        self.assertIn("--reps must be >= 1", err.getvalue())
        with mock.patch("sys.stderr", new_callable=io.StringIO) as err:
            with self.assertRaises(SystemExit):
                self.parser().parse(["--min_sample_time=0"], positive=("min_sample_time",))
        self.assertIn("--min_sample_time must be > 0", err.getvalue())

    def test_select_workloads(self):
        pool = tuple(mock.Mock(spec=["name"]) for _ in range(2))
        pool[0].name, pool[1].name = "CIFAR", "ImageNet"
        self.assertEqual(common.select_workloads(None, pool), pool)
        self.assertEqual(common.select_workloads("imagenet", pool), pool[1:])
        with self.assertRaisesRegex(SystemExit, "CIFAR, ImageNet"):
            common.select_workloads("MNIST", pool)


class EveryScriptTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(
        ("checkpoint_size", "--workloads=mnist"), ("checkpoint_size", "--steps=0"),
        ("deformation", "--modes=eager"), ("deformation", "--reps=0"),
        ("deformation", "--threads=-1"), ("metrics", "--reps=0"), ("pipelines", "--reps=0"),
        ("pipelines", "--batches=0"), ("pipelines", "--warmup_batches=-1"),
        ("profile", "--reps=0"), ("training", "--xla=maybe"), ("training", "--steps_per_call=0"),
        ("vs_albumentations", "--draws=0"), ("vs_albumentations", "--min_sample_time=-1"))
    def test_a_bad_flag_exits_2_naming_it(self, name, flag):
        script = importlib.import_module("bench." + name)
        with mock.patch("sys.stderr", new_callable=io.StringIO) as err:
            with self.assertRaises(SystemExit) as exit_:
                script.parse_args([flag])
        self.assertEqual(exit_.exception.code, 2)
        self.assertIn(flag.split("=")[0] + " must", err.getvalue())

    @parameterized.parameters(("metrics", "MNIST"), ("profile", "VGG"))
    def test_an_unknown_workload_is_refused_before_anything_runs(self, name, workload):
        script = importlib.import_module("bench." + name)
        with self.assertRaisesRegex(SystemExit, f"--workloads: none of '{workload}'"):
            script.main(["--quick", f"--workloads={workload}"], out=io.StringIO())


if __name__ == "__main__":
    tf.test.main()
