"""The package layering of docs/architecture.md, checked on the source.

- Layers: deform_tf imports none of the other packages; pipelines only deform_tf; experiments
  only deform_tf and pipelines; launch only those three; bench anything but tests; no import
  of a layer above, not even inside a function. Outside experiments, only the launchers that
  run the study import experiments.study.
- Flags: only launch/ uses absl flags; importing any module of the other packages defines none.
- The module import graph (top-level imports) has no cycle.
- No module uses a `_private` name of a module in another package.
- Every module imports alone in a fresh interpreter (project modules purged between imports).
"""

import ast
import os
import subprocess
import sys

import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("deform_tf", "pipelines", "experiments", "launch", "bench")
# What each package may import from the others.
ALLOWED = {
    "deform_tf": set(),
    "pipelines": {"deform_tf"},
    "experiments": {"deform_tf", "pipelines"},
    "launch": {"deform_tf", "pipelines", "experiments"},
    "bench": {"deform_tf", "pipelines", "experiments", "launch"},
}


def project_modules():
    """{module name: path} of every Python module of the packages."""
    modules = {}
    for package in PACKAGES:
        for directory, _, files in os.walk(os.path.join(REPO, package)):
            for file in sorted(files):
                if not file.endswith(".py"):
                    continue
                path = os.path.join(directory, file)
                parts = os.path.relpath(path, REPO)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                modules[".".join(parts)] = path
    return modules


def _resolve(name, modules):
    """The project module `name` refers to (itself, or its package for a name inside one)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def module_imports(path, modules):
    """(imported project modules at module level, aliases {local name: module}) of a file."""
    tree = ast.parse(open(path).read(), path)
    imported, aliases = set(), {}

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _resolve(alias.name, modules)
                    if target:
                        imported.add(target)
                        local = alias.asname or alias.name.split(".")[0]
                        aliases[local] = alias.name if alias.asname else local
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    target = _resolve(full, modules)
                    if target:
                        imported.add(target)
                        aliases[alias.asname or alias.name] = full
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body + node.orelse + getattr(node, "finalbody", []) +
                      [n for h in getattr(node, "handlers", []) for n in h.body])

    visit(tree.body)
    return imported, aliases, tree


def find_cycles(graph):
    """The import cycles of {module: [imported modules]}, each as "a -> b -> a"."""
    state, cycles = {}, []

    def visit(name, path):
        state[name] = "open"
        for target in graph[name]:
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def private_uses(name, aliases, tree):
    """The `_private` names of other packages' modules that module `name` imports or uses."""
    package, used = name.split(".")[0], []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.module.split(".")[0] in PACKAGES:
            for alias in node.names:
                if alias.name.startswith("_") and node.module.split(".")[0] != package:
                    used.append(f"{name}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.attr.startswith("_") and not node.attr.startswith("__"):
            target = aliases.get(node.value.id)
            if target and target.split(".")[0] != package:
                used.append(f"{name}: {target}.{node.attr}")
    return used


def upward_imports(name, tree):
    """Imports, anywhere in module `name` (inside functions too), of a package it may not use."""
    package, wrong = name.split(".")[0], []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module]
        for target in targets:
            other = target.split(".")[0]
            if other in PACKAGES and other != package and other not in ALLOWED[package]:
                wrong.append(f"{name} imports {target} (line {node.lineno})")
    return wrong


def flag_uses(name, tree):
    """The absl.flags imports of module `name`."""
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "absl" and any(
                alias.name == "flags" for alias in node.names):
            uses.append(f"{name}: from absl import flags")
        elif isinstance(node, ast.Import) and any(
                alias.name == "absl.flags" for alias in node.names):
            uses.append(f"{name}: import absl.flags")
    return uses


class ArchitectureTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.modules = project_modules()
        cls.parsed = {name: module_imports(path, cls.modules)
                      for name, path in cls.modules.items()}

    def test_packages_import_only_the_layers_below(self):
        wrong = []
        for name, (imported, _, _) in self.parsed.items():
            package = name.split(".")[0]
            for target in imported:
                other = target.split(".")[0]
                if other != package and other not in ALLOWED[package]:
                    wrong.append(f"{name} imports {target}")
        self.assertEmpty(wrong)

    def test_no_import_of_a_layer_above_anywhere_in_a_module(self):
        # Function-level imports too (module_imports sees the module level only).
        wrong = [line for name, (_, _, tree) in self.parsed.items()
                 for line in upward_imports(name, tree)]
        self.assertEmpty(wrong)

    def test_only_its_launchers_import_the_study(self):
        importers = sorted(
            name for name, (imported, _, _) in self.parsed.items()
            if not name.startswith("experiments.study") and
            any(t.startswith("experiments.study") for t in imported))
        self.assertEqual(importers, ["launch.plot", "launch.reproduce", "launch.write_configs"])

    def test_only_launch_uses_flags(self):
        users = [line for name, (_, _, tree) in self.parsed.items()
                 if name.split(".")[0] != "launch" for line in flag_uses(name, tree)]
        self.assertEmpty(users)

    def test_module_imports_have_no_cycle(self):
        graph = {name: sorted(t for t in imported if t != name and t in self.modules)
                 for name, (imported, _, _) in self.parsed.items()}
        # A package's __init__ importing its own modules is not an edge back to them.
        graph = {name: [t for t in targets if not name.startswith(t + ".")]
                 for name, targets in graph.items()}
        cycles = find_cycles(graph)
        self.assertEmpty(cycles)

    def test_no_private_name_of_another_package(self):
        used = [use for name, (_, aliases, tree) in self.parsed.items()
                for use in private_uses(name, aliases, tree)]
        self.assertEmpty(used)

    def test_the_checks_find_what_they_look_for(self):
        # A made-up module and graph, so that the checks above cannot pass vacuously.
        path = os.path.join(self.get_temp_dir(), "fake.py")
        with open(path, "w") as f:
            f.write("from deform_tf import sensitivity\nfrom launch.common import _x\n"
                    "y = sensitivity._hidden\n\n\ndef f():\n    from absl import flags\n"
                    "    import launch.train\n")
        imported, aliases, tree = module_imports(path, self.modules)
        self.assertEqual(imported, {"deform_tf.sensitivity", "launch.common"})
        self.assertEqual(private_uses("bench.fake", aliases, tree), [
            "bench.fake: from launch.common import _x",
            "bench.fake: deform_tf.sensitivity._hidden"])
        self.assertEqual(private_uses("deform_tf.fake", aliases, tree),
                         ["deform_tf.fake: from launch.common import _x"])
        self.assertEqual(upward_imports("experiments.fake", tree), [
            "experiments.fake imports launch.common (line 2)",
            "experiments.fake imports launch.train (line 8)"])
        self.assertEqual(upward_imports("bench.fake", tree), [])
        self.assertEqual(flag_uses("experiments.fake", tree),
                         ["experiments.fake: from absl import flags"])
        self.assertEqual(find_cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}),
                         ["a -> b -> c -> a"])

    def test_every_module_imports_alone_and_only_launchers_define_flags(self):
        # One interpreter (TensorFlow imported once); before each module, every project module
        # and the flags it defined are removed, so each import starts from nothing of ours. A
        # module outside launch/ that defines a flag when imported is reported.
        script = (
            "import importlib, sys, tensorflow\n"
            "from absl import flags\n"
            f"packages = {PACKAGES!r}\n"
            "failed = []\n"
            "for name in sys.argv[1:]:\n"
            "    for loaded in [m for m in sys.modules if m.split('.')[0] in packages]:\n"
            "        del sys.modules[loaded]\n"
            "    before = set(flags.FLAGS)\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except Exception as e:\n"
            "        failed.append(f'{name}: {type(e).__name__}: {e}')\n"
            "    defined = set(flags.FLAGS) - before\n"
            "    if defined and name.split('.')[0] != 'launch':\n"
            "        failed.append(f'{name} defines flags {sorted(defined)}')\n"
            "    for flag in defined:\n"
            "        delattr(flags.FLAGS, flag)\n"
            "print('\\n'.join(failed))\n")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
        result = subprocess.run([sys.executable, "-c", script] + sorted(self.modules), cwd=REPO,
                                env=env, capture_output=True, text=True, timeout=600)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertEqual(result.stdout.strip(), "")


if __name__ == "__main__":
    tf.test.main()
