"""Smoke test of `bench.profile`: the quick workload, one round, the report's rows and verdicts."""

import io

import tensorflow as tf

from bench import profile as bench_profile
from deform_tf import sensitivity


class BenchProfileTest(tf.test.TestCase):

    def test_quick_time_report(self):
        out = io.StringIO()
        report = bench_profile.main(["--quick", "--no_memory"], out=out)
        self.assertEqual(out.getvalue().strip(), report.strip())
        self.assertIn("QUICK", report)
        row = next(line for line in report.splitlines() if line.startswith("| MobileNetV2 |"))
        forward, profiled, ratio = (float(cell.split()[0]) for cell in
                                    row.strip("|").split("|")[1:4])
        self.assertGreater(forward, 0)
        self.assertAllClose(ratio, profiled / forward, rtol=0.1)
        self.assertIn("target <= 1.5x", report)

    def test_breakdown_times_every_stage(self):
        out = io.StringIO()
        report = bench_profile.main(["--quick", "--no_memory", "--breakdown"], out=out)
        stages = [line for line in report.splitlines() if line.startswith("| MobileNetV2 | ")
                  and any(word in line for word in ("stage:", "aside:"))]
        self.assertLen(stages, 3)  # one chunk: the call forms the Gram matrices itself
        for line in stages:
            seconds, ratio = line.strip("|").split("|")[2:4]
            self.assertGreater(float(seconds.split()[0]), 0)
            self.assertGreater(float(ratio), 0)

    def test_candidate_is_timed_in_the_same_rounds(self):
        out = io.StringIO()
        report = bench_profile.main(["--quick", "--no_memory", "--candidate",
                                     sensitivity.__file__], out=out)
        self.assertIn(f"Candidate: {sensitivity.__file__}.", report)
        row = next(line for line in report.splitlines() if "candidate:" in line)
        self.assertGreater(float(row.strip("|").split("|")[2].split()[0]), 0)
        with self.assertRaises(SystemExit):
            bench_profile.main(["--quick", "--candidate=/no/such/sensitivity.py"],
                               out=io.StringIO())

    def test_stages_of_several_chunks_run(self):
        w = bench_profile.QUICK_WORKLOADS[0]
        model = w.build()
        runner = sensitivity.RepresentationRunner(model)
        entries = bench_profile._stage_entries(w, model, bench_profile._images(w), runner, 4,
                                               iter(range(1, 100)))
        self.assertEqual([name for name, _ in entries], [
            bench_profile.STAGE_NOISE, bench_profile.STAGE_MEASURES, bench_profile.STAGE_MEDIANS,
            bench_profile.STAGE_GRAM, bench_profile.ASIDE_TF_GRAM])
        outputs = {name: fn() for name, fn in entries}
        # The two ways of forming the Gram matrices agree.
        self.assertAllClose(outputs[bench_profile.STAGE_GRAM],
                            outputs[bench_profile.ASIDE_TF_GRAM], atol=1e-5)

    def test_memory_report_and_verdicts(self):
        row = {"workload": "ResNet50", "points": 59, "chunk": 4, "profile_peak_mib": 7000.0,
               "forward_peak_mib": 2000.0, "baseline_mib": 1000.0, "stored_mib": 5400.0,
               bench_profile.FORWARD: 10.0, bench_profile.PROFILE: 16.0,
               bench_profile.FORWARD + " IQR": 0.0, bench_profile.PROFILE + " IQR": 0.0,
               "ratio": 1.6, "entries": [bench_profile.FORWARD, bench_profile.PROFILE]}
        report = bench_profile.format_report([row], memory=True)
        self.assertIn("| ResNet50 | 59 | 4 | 6.84 GiB | 1.95 GiB | 0.98 GiB | 5.27 GiB |", report)
        self.assertIn("peak RSS 6.84 GiB; target <= 8 GiB: met", report)
        self.assertIn("1.60x forward 3N; target <= 1.5x: NOT met", report)


if __name__ == "__main__":
    tf.test.main()
