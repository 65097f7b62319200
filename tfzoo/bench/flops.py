"""FLOP counting from a traced graph: 2 x the multiply-adds of every conv, matmul and einsum.

Element-wise ops (BN, ReLU, adds, pooling) are not counted, the usual convention (ResNet-50:
~4.1 G multiply-adds = ~8.2 GFLOPs per 224x224 frame). Counts follow function calls inside the
graph, so a training step's graph gives forward + backward.
"""

from __future__ import annotations


_CONV_FORWARD = {"Conv2D", "Conv3D", "Conv", "_FusedConv2D", "_FusedConv3D"}
_CONV_BACKPROP_INPUT = {"Conv2DBackpropInput", "Conv2DBackpropInputV2", "Conv3DBackpropInput",
                        "Conv3DBackpropInputV2"}
_CONV_BACKPROP_FILTER = {"Conv2DBackpropFilter", "Conv2DBackpropFilterV2", "Conv3DBackpropFilter",
                         "Conv3DBackpropFilterV2"}
_DEPTHWISE = {"DepthwiseConv2dNative", "DepthwiseConv2dNativeBackpropInput",
              "DepthwiseConv2dNativeBackpropFilter"}
_MATMUL = {"MatMul", "_FusedMatMul"}
_BATCH_MATMUL = {"BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"}
_FUNCTION_CALLS = {"PartitionedCall", "StatefulPartitionedCall"}


class FlopCountError(ValueError):
    """A counted op has a dimension unknown at trace time (FLOPs need static shapes)."""


def _dims(shape, op) -> list[int]:
    dims = shape.as_list() if shape.rank is not None else None
    if dims is None or any(d is None for d in dims):
        raise FlopCountError(
            f"op {op.name} ({op.type}) has a dynamic shape {shape}; trace with fully defined "
            "input shapes to count FLOPs"
        )
    return dims


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def op_multiply_adds(op) -> int:
    """Multiply-adds of one graph op (0 for ops that are not convolutions or matmuls)."""
    t = op.type
    if t in _CONV_FORWARD:
        # Each output element is a dot product over the kernel window and input channels.
        return _prod(_dims(op.outputs[0].shape, op)) * _prod(_dims(op.inputs[1].shape, op)[:-1])
    if t in _CONV_BACKPROP_INPUT:  # (input_sizes, filter, out_backprop) -> d input
        return _prod(_dims(op.inputs[2].shape, op)) * _prod(_dims(op.inputs[1].shape, op)[:-1])
    if t in _CONV_BACKPROP_FILTER:  # (input, filter_sizes, out_backprop) -> d filter
        return _prod(_dims(op.inputs[2].shape, op)) * _prod(_dims(op.outputs[0].shape, op)[:-1])
    if t in _DEPTHWISE:
        # Filter (kh, kw, C, multiplier): every element of the full-size output / out_backprop
        # costs kh * kw multiply-adds.
        filt = op.outputs[0] if t.endswith("Filter") else op.inputs[1]
        big = op.outputs[0] if t == "DepthwiseConv2dNative" else op.inputs[2]
        return _prod(_dims(big.shape, op)) * _prod(_dims(filt.shape, op)[:2])
    if t in _MATMUL:
        a = _dims(op.inputs[0].shape, op)
        k = a[0] if op.get_attr("transpose_a") else a[1]
        return _prod(_dims(op.outputs[0].shape, op)) * k
    if t in _BATCH_MATMUL:
        a = _dims(op.inputs[0].shape, op)
        k = a[-2] if op.get_attr("adj_x") else a[-1]
        return _prod(_dims(op.outputs[0].shape, op)) * k
    if t == "Einsum":
        # Multiply-adds of a (two-operand) contraction: the product of every index's size.
        lhs = op.get_attr("equation").decode().replace(" ", "").split("->")[0].split(",")
        if len(lhs) < 2 or any("." in term for term in lhs):
            return 0
        sizes: dict[str, int] = {}
        for term, tensor in zip(lhs, op.inputs):
            sizes.update(zip(term, _dims(tensor.shape, op)))
        return _prod(sizes.values())
    return 0


def count_graph_flops(graph_or_fn) -> int:
    """FLOPs (2 x multiply-adds) of a `tf.Graph`, a `ConcreteFunction` or a traced `tf.function`.

    Function-call ops (`PartitionedCall`) are followed into their function graphs when the graph
    carries them (ConcreteFunction graphs do).
    """
    graph = getattr(graph_or_fn, "graph", graph_or_fn)
    return 2 * _graph_multiply_adds(graph, set())


def _graph_multiply_adds(graph, seen: set) -> int:
    total = 0
    for op in graph.get_operations():
        if op.type in _FUNCTION_CALLS:
            name = op.get_attr("f").name
            fn = _find_function(graph, name)
            if fn is None:
                raise FlopCountError(f"cannot follow function call {op.name} -> {name}")
            total += _graph_multiply_adds(fn.graph, seen)
            continue
        total += op_multiply_adds(op)
    return total


def _find_function(graph, name):
    g = graph
    while g is not None:
        fns = getattr(g, "_functions", {})
        if name in fns and hasattr(fns[name], "graph"):
            return fns[name]
        g = getattr(g, "outer_graph", None)
    return None


# Timing helpers
