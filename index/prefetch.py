"""Software prefetch for numba kernels (LLVM's `llvm.prefetch`), which numba does not expose itself.

Block-max scoring jumps between blocks, so each (block, term) run of postings is a cache miss whose
address is known well before it is read; prefetching a few blocks ahead overlaps those misses.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def prefetch(typingctx, array, index):
    """Hint that `array[index]` (a 1-D C-contiguous array, integer index) will be read soon. No bounds check."""
    if not (isinstance(array, types.Array) and array.ndim == 1 and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array_value, index_value = args
        array_struct = context.make_array(signature.args[0])(context, builder, array_value)
        pointer = builder.gep(array_struct.data, [index_value])
        byte_pointer = builder.bitcast(pointer, cgutils.voidptr_t)
        i32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [cgutils.voidptr_t, i32, i32, i32]), "llvm.prefetch.p0i8"
        )
        # read access, high temporal locality, data cache
        builder.call(function, [byte_pointer, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.none(array, index), codegen
