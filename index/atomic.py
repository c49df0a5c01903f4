"""Atomic fetch-and-add for numba kernels (LLVM's `atomicrmw`), which numba does not expose on the CPU.

The batch kernels hand queries to their workers from one shared counter: a worker that drew cheap queries
takes the next one instead of idling while another works through a run of expensive ones (query costs vary
tenfold, so a fixed round-robin split can leave one thread idle while the other finishes its share).
"""

from __future__ import annotations

from numba import types
from numba.extending import intrinsic


@intrinsic
def fetch_add(typingctx, array, index, value):
    """Atomically add `value` to `array[index]` (1-D C-contiguous int64 array) and return the old value."""
    if not (isinstance(array, types.Array) and array.ndim == 1 and array.dtype == types.int64
            and isinstance(index, types.Integer) and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array_value, index_value, add_value = args
        array_struct = context.make_array(signature.args[0])(context, builder, array_value)
        pointer = builder.gep(array_struct.data, [index_value])
        add_value = context.cast(builder, add_value, signature.args[2], types.int64)
        return builder.atomic_rmw("add", pointer, add_value, "monotonic")

    return types.int64(array, index, value), codegen

