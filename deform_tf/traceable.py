"""Public ops that run as plain Python functions and also offer `tf.function`'s tracing methods.

tensorflow-addons defined `dense_image_warp` and `interpolate_bilinear` with `@tf.function`, so
its users call, for example, `dense_image_warp.get_concrete_function(spec, spec)`. Making our
ops `tf.function`s would change how eager calls run (each new input shape would be traced
first). A `TraceableOp` instead calls the function directly, as any Python function (eager
calls stay eager, calls inside a `tf.function` or `tf.data` map trace into the caller's graph),
and creates a `tf.function` of it only for the tracing methods below.
"""

import functools

import tensorflow as tf


class TraceableOp:
    """A function that also has `get_concrete_function`, like a `tf.function`.

    Calling it calls the wrapped function. `get_concrete_function(*args, **kwargs)` traces the
    function through one `tf.function` kept per op (so repeated requests for the same
    signature reuse the trace), e.g. with `tf.TensorSpec`s of unknown shape;
    `python_function` is the wrapped function, as on a `tf.function`.
    """

    def __init__(self, python_function):
        functools.update_wrapper(self, python_function)
        self.python_function = python_function
        self._traced = None

    def __call__(self, *args, **kwargs):
        return self.python_function(*args, **kwargs)

    def get_concrete_function(self, *args, **kwargs):
        """The concrete function of `tf.function(self.python_function)` for these arguments."""
        if self._traced is None:
            self._traced = tf.function(self.python_function)
        return self._traced.get_concrete_function(*args, **kwargs)

    def __repr__(self):
        return f"<deform_tf op {self.__name__}>"


def traceable(python_function):
    """Decorator: the function as a `TraceableOp`."""
    return TraceableOp(python_function)
