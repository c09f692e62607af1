"""Offline stand-in for @rules_python//python:defs.bzl: thin wrappers over the native rules.

BUILD files load from here exactly as they would from the real rules_python, so the same
BUILD files work online once the --override_repository lines in .bazelrc are dropped.
"""

def py_binary(**attrs):
    native.py_binary(**attrs)

def py_library(**attrs):
    native.py_library(**attrs)

def py_test(**attrs):
    native.py_test(**attrs)
