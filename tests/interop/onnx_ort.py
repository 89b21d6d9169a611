"""Helper of onnx_ort.sh: makes the synthetic data and checks pare's ONNX exports in onnxruntime.

Usage:
  onnx_ort.py data RUN_DIR
      writes RUN_DIR/{mlp,cnn}_{train,test}_{x,y}.npy and the model specs mlp.json, mlp_act.json, cnn.json
  onnx_ort.py check float|w8|int8 MODEL.onnx X.npy PARE_OUT.npy [OP,OP,...]
      checks the graph (and that it holds the listed ops) (onnx checker, IR/opset, names, symbolic batch, QDQ structure for int8), runs it in
      onnxruntime with graph optimizations off and on, and compares with pare's outputs:
        float: max |ort - pare| <= 1e-4
        w8:    (s8 weights behind DequantizeLinear, float activations) max |ort - pare| <= 1e-4
        int8:  max |ort - pare| <= one output step (see tolerance_int8) and argmax agreement >= 99 %; with
               ORT's graph optimizations off (the QDQ graph as written) also >= 99 % of outputs within 1e-4
"""
import json
import os
import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_data import bar_images, save_xy  # noqa: E402

FLOAT_TOL = 1e-4
ARGMAX_MIN = 0.99
EXACT_MIN = 0.99  # int8, optimizations off: the fraction of outputs within FLOAT_TOL of pare's


def make_data(run):
    rng = np.random.default_rng(7)
    # MLP: 10 features, 3 classes from a fixed random linear rule, not centred (mean 2, std 3) so that the
    # input normalization (pare train --normalize) is not the identity.
    w = rng.normal(size=(10, 3))
    for split, n in (("train", 768), ("test", 300)):
        x = (2.0 + 3.0 * rng.normal(size=(n, 10))).astype(np.float32)
        y = np.argmax((x - 2.0) @ w + 0.3 * rng.normal(size=(n, 3)), axis=1).astype(np.int32)
        save_xy(f"{run}/mlp_{split}", x, y)
    # CNN: 1x8x8 images of a bar, horizontal (0), vertical (1) or diagonal (2), at a random offset, plus noise.
    for split, n in (("train", 600), ("test", 240)):
        x, y = bar_images(rng, n)
        save_xy(f"{run}/cnn_{split}", x, y)
    specs = {
        # Trained with --normalize: the export starts with Sub/Div. ReLU only: pare's int8 net is for MLPs of
        # linear/relu layers, so this one is also quantized.
        "mlp": {"name": "mlp", "input": [10], "layers": [
            {"type": "linear", "out": 24}, {"type": "relu"}, {"type": "dropout", "p": 0.1},
            {"type": "linear", "out": 16}, {"type": "relu"}, {"type": "linear", "out": 3}]},
        # The other activations (float only).
        "mlp_act": {"name": "mlp_act", "input": [10], "layers": [
            {"type": "linear", "out": 16}, {"type": "tanh"}, {"type": "linear", "out": 12},
            {"type": "sigmoid"}, {"type": "linear", "out": 3, "bias": False}]},
        # Every float op of the export: conv with and without bias, strided and padded, both poolings, tanh and
        # sigmoid.
        "cnn": {"name": "cnn", "input": [1, 8, 8], "layers": [
            {"type": "conv2d", "out": 4, "kernel": 3, "pad": 1}, {"type": "relu"},
            {"type": "maxpool", "kernel": 2},
            {"type": "conv2d", "out": 8, "kernel": 3, "pad": 1, "bias": False}, {"type": "tanh"},
            {"type": "avgpool", "kernel": 2},
            {"type": "conv2d", "out": 6, "kernel": 2, "stride": 2, "pad": 1}, {"type": "relu"},
            {"type": "flatten"}, {"type": "dropout", "p": 0.2},
            {"type": "linear", "out": 12}, {"type": "sigmoid"}, {"type": "linear", "out": 3}]},
    }
    # cnn shapes: (1,8,8) conv3 pad1 -> (4,8,8) maxpool2 -> (4,4,4) conv3 pad1 -> (8,4,4) avgpool2 -> (8,2,2)
    # conv2 stride2 pad1 -> (6,2,2) flatten -> 24 -> 12 -> 3
    for name, spec in specs.items():
        with open(f"{run}/{name}.json", "w") as f:
            json.dump(spec, f)


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check_graph(path, mode, required_ops):
    """Structure of the export; returns a one-line summary."""
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is None:
        print(f"  {os.path.basename(path)}: onnx package not importable, graph checks left to onnxruntime")
        return
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    opsets = {o.domain or "ai.onnx": o.version for o in m.opset_import}
    if m.ir_version > 8:
        fail(f"{path}: IR version {m.ir_version} (promised: 8 at most)")
    if opsets.get("ai.onnx", 0) > 17:
        fail(f"{path}: opset {opsets} (promised: 17 at most)")
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    real_inputs = [i for i in g.input if i.name not in inits]
    if [i.name for i in real_inputs] != ["input"]:
        fail(f"{path}: graph inputs {[i.name for i in real_inputs]}, expected ['input']")
    if [o.name for o in g.output] != ["logits"]:
        fail(f"{path}: graph outputs {[o.name for o in g.output]}, expected ['logits']")
    d0 = real_inputs[0].type.tensor_type.shape.dim[0]
    if d0.dim_param != "batch":
        fail(f"{path}: input's first dimension is {d0} (expected the symbolic 'batch')")
    ops = [n.op_type for n in g.node]
    counts = {op: ops.count(op) for op in sorted(set(ops))}
    missing = set(required_ops) - set(ops)
    if missing:
        fail(f"{path}: no {sorted(missing)} node (nodes: {counts})")
    if mode in ("int8", "w8"):
        # QDQ: every Gemm/MatMul/Conv takes its weight from a DequantizeLinear of an s8 initializer with one scale
        # per output channel (axis 0), and (int8) its activation input from a DequantizeLinear(QuantizeLinear(...))
        # or (w8, weights-only int8) a float activation.
        producer = {o: n for n in g.node for o in n.output}
        linear = [n for n in g.node if n.op_type in ("Gemm", "MatMul", "Conv")]
        if not linear:
            fail(f"{path}: no Gemm/MatMul/Conv node")
        for n in linear:
            act, wt = producer.get(n.input[0]), producer.get(n.input[1])
            if mode == "w8":
                if act is not None and act.op_type == "DequantizeLinear":
                    fail(f"{path}: {n.op_type} {n.name}: a quantized activation in a weights-only export")
            elif act is None or act.op_type != "DequantizeLinear" or producer.get(act.input[0]) is None \
                    or producer[act.input[0]].op_type != "QuantizeLinear":
                fail(f"{path}: {n.op_type} {n.name}: activation input is not DequantizeLinear(QuantizeLinear(.))")
            if wt is None or wt.op_type != "DequantizeLinear" or wt.input[0] not in inits:
                fail(f"{path}: {n.op_type} {n.name}: weight is not DequantizeLinear of an initializer")
            w = inits[wt.input[0]]
            if w.data_type != onnx.TensorProto.INT8:
                fail(f"{path}: weight {w.name} has ONNX data type {w.data_type}, expected INT8 (3)")
            scale = onnx.numpy_helper.to_array(inits[wt.input[1]])
            axis = next((a.i for a in wt.attribute if a.name == "axis"), 1)
            # Conv and Gemm-with-transB weights are (out, ...): axis 0; a MatMul or plain Gemm weight is
            # (in, out): axis 1.
            trans_b = next((a.i for a in n.attribute if a.name == "transB"), 0)
            want_axis = 0 if n.op_type == "Conv" or (n.op_type == "Gemm" and trans_b) else 1
            if scale.size != w.dims[want_axis] or axis != want_axis:
                fail(f"{path}: weight {w.name} {list(w.dims)}: {scale.size} scales on axis {axis} "
                     f"(expected one per output channel)")
        qs = [n for n in g.node if n.op_type == "QuantizeLinear"]
        for q in qs:
            zp = inits.get(q.input[2]) if len(q.input) > 2 else None
            if zp is not None and zp.data_type not in (onnx.TensorProto.UINT8, onnx.TensorProto.INT8):
                fail(f"{path}: QuantizeLinear {q.name}: zero point of data type {zp.data_type}")
    else:
        bad = [op for op in ops if op in ("QuantizeLinear", "DequantizeLinear")]
        if bad:
            fail(f"{path}: float export has {bad}")
    if mode == "w8" and "QuantizeLinear" in ops:
        fail(f"{path}: weights-only int8 export has QuantizeLinear")
    print(f"  {os.path.basename(path)}: onnx {onnx.__version__} checker ok (full_check), IR {m.ir_version}, "
          f"opset {opsets.get('ai.onnx')}, nodes {counts}")


def run_ort(path, x, optimize, batch=None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    if batch is None:
        return s.run(["logits"], {"input": x})[0]
    return np.concatenate([s.run(["logits"], {"input": x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def tolerance_int8(ref):
    """One step of a u8 grid spanning the logits' range over the test set: (max - min) / 255.

    pare's int8 net and ORT compute the same integer products; they can differ where an activation lands on a
    different u8 level (a value within float rounding of a rounding boundary, or ORT's fused kernels computing
    x / scale as x * (1 / scale) or requantizing in another order). One such flip in the last linear layer's
    input moves a logit by scale_in * |w|, far less than a step of the output's own 8-bit grid; a flip deeper
    in the net reaches the logits damped the same way. More than one output step means a different
    computation (wrong scale, zero point, axis or rounding), not rounding noise."""
    return float(ref.max() - ref.min()) / 255.0


def check(mode, path, x_path, pare_path, required_ops=""):
    import onnxruntime as ort
    x = np.load(x_path).astype(np.float32)
    ref = np.load(pare_path)
    name = os.path.basename(path)
    check_graph(path, mode, [op for op in required_ops.split(",") if op])
    if ref.dtype != np.float32 or ref.ndim != 2 or ref.shape[0] != x.shape[0]:
        fail(f"{pare_path}: pare eval --save-outputs wrote {ref.dtype} {ref.shape}, expected float32 "
             f"({x.shape[0]}, classes)")
    tol = tolerance_int8(ref) if mode == "int8" else FLOAT_TOL
    ok = True
    for optimize in (False, True):
        for batch in (None, 7):  # the whole test set at once, and in batches of 7 (the batch dim is symbolic)
            out = run_ort(path, x, optimize, batch)
            if out.shape != ref.shape:
                fail(f"{name}: onnxruntime output {out.shape}, pare {ref.shape}")
            diff = np.abs(out.astype(np.float64) - ref)
            agree = float(np.mean(out.argmax(1) == ref.argmax(1)))
            good = diff.max() <= tol and (mode != "int8" or agree >= ARGMAX_MIN)
            if mode == "int8" and not optimize:
                # Without graph optimizations ORT runs the QDQ graph as written: float DequantizeLinear of the
                # same u8/s8 values, a float product. pare's integer product is that computation exactly (up to
                # float rounding), so only the rare activation that rounds to a neighbouring level may differ.
                good = good and float(np.mean(diff <= FLOAT_TOL)) >= EXACT_MIN
            ok = ok and good
            print(f"  {name} onnxruntime {ort.__version__} optimizations {'on ' if optimize else 'off'} "
                  f"batch {batch or len(x)}: max|ort-pare| {diff.max():.3g} (median {np.median(diff):.3g}, "
                  f"tolerance {tol:.3g}; {int((diff > FLOAT_TOL).sum())} of {diff.size} beyond 1e-4), argmax agreement {100 * agree:.2f}%"
                  f"{'' if good else '  <-- FAIL'}")
    if not ok:
        fail(f"{name}: onnxruntime and pare disagree beyond the tolerance")


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "data":
        make_data(sys.argv[2])
    elif len(sys.argv) in (6, 7) and sys.argv[1] == "check" and sys.argv[2] in ("float", "w8", "int8"):
        check(*sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
