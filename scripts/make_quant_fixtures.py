"""Golden fixtures for the encoders and the GGUF writer (Tests/DTFormatsTests/QuantizationTests.swift, GGUFWriterTests.swift),
made with the gguf package's numpy reference (gguf/quants.py `quantize`, gguf/gguf_writer.py `GGUFWriter`):
  - Tests/DTFormatsTests/Fixtures/quantize_cases.safetensors: "input" (F32, whole blocks of 32) and the bytes
    gguf.quants.quantize gives for it as F16, BF16, Q8_0, Q4_0 and Q4_1 (U8 tensors); __metadata__ "cases" is a
    JSON list of [case name, first block, block count] so a failing test names the case.
  - Tests/DTFormatsTests/Fixtures/writer_reference.gguf.bin: a GGUF written by gguf.GGUFWriter with metadata of
    every value type (arrays of every element type, a nested array) and six tensors whose byte sizes are not
    multiples of the alignment; tensor values are v(i) = ((7 i) mod 23 - 11) / 8, exact in fp32, so the Swift test
    makes the same bytes with its own encoders.
Run (in a throwaway venv outside the repo; takes a second):
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install gguf numpy safetensors
    /tmp/ref/bin/python scripts/make_quant_fixtures.py
Made with gguf 0.19.0, numpy 2.4.6, safetensors 0.8.0 on x86-64. numpy's float -> int8/uint8 casts of NaN/inf (the
degenerate blocks below) give 0 there; numpy's float32 -> float16 keeps signalling-NaN payloads unquieted.
"""
import json
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q, GGUFValueType as VT
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "DTFormatsTests", "Fixtures")
rng = np.random.default_rng(20240611)


def bits(*patterns):
    return np.array(patterns, dtype=np.uint32).view(np.float32)


def block(values, fill=0.0):
    """Pads a list of values to one block of 32 (with `fill`)."""
    v = np.full(32, fill, dtype=np.float32)
    v[:len(values)] = np.asarray(values, dtype=np.float32)
    return v


def quant_cases():
    cases = []
    scales = 10.0 ** rng.uniform(-3, 1, size=(48, 1))
    cases.append(("random_normal", (rng.standard_normal((48, 32)) * scales).astype(np.float32)))
    cases.append(("all_zero", np.zeros((1, 32), np.float32)))
    cases.append(("all_negative_zero", np.full((1, 32), -0.0, np.float32)))
    cases.append(("constant", np.stack([np.full(32, c, np.float32) for c in (0.7, -0.3, 1.0, 3.0e-5)])))
    huge = (rng.standard_normal((4, 32)) * 0.1).astype(np.float32)
    huge[0, 5], huge[1, 17], huge[2, 31], huge[3, 0] = 1.0e4, -7.0e5, 1.0e7, 1.0e30   # last two: f16 scales overflow
    cases.append(("one_huge_value", huge))
    cases.append(("negative_only", -rng.uniform(0.1, 2.0, size=(2, 32)).astype(np.float32)))
    cases.append(("positive_only", rng.uniform(0.1, 2.0, size=(2, 32)).astype(np.float32)))
    # d = amax/127 subnormal but 1/d finite; all-subnormal blocks where 1/d overflows (x·inf, 0·inf = NaN); mixed.
    tiny = (rng.standard_normal((4, 32))).astype(np.float32)
    tiny[0] *= np.float32(1e-36)
    tiny[1] *= np.float32(1e-40)
    tiny[2] *= np.float32(1e-44)
    tiny[3, ::3] = bits(1, 0x80000001, 0x000fffff, 0x807fffff, 0x00400000, 0x80000010, 0x00000100, 0x80001000, 0x00000003, 0x00000002, 0x80000005)
    cases.append(("tiny_and_subnormal", tiny))
    # Q8_0: amax 127 → d = 1, id = 1, x·id lands exactly on .5 (round half away from zero) and next to it.
    q8 = [127.0] + [s * (k + 0.5) for k in (0, 1, 2, 3, 62, 126) for s in (1, -1)]
    q8 += [0.49999997, -0.49999997, 0.50000006, -0.50000006, 1.4999999, -2.5000002]
    cases.append(("ties_q8_0", np.stack([block(q8), block([-127.0] + [k + 0.5 for k in range(31)])])))
    # Q4_0: first max |x| is -8 → d = 1, id = 1; x + 8.5 on and next to integers; +8 → 16 clipped to 15.
    q4 = [-8.0, 8.0, -7.5, -0.5, 0.5, 6.5, 7.5, -8.0, 0.49999997, -0.50000006, 7.4999995, -7.5000005, 1e-7, -1e-7]
    cases.append(("ties_q4_0", np.stack([block(q4), block([8.0, -8.0, 3.5, -3.5, 4.5, -4.5])])))
    # Q4_1: min 0, max 15 → d = 1; (x - min)·id + 0.5 on and next to integers; and an inexact d.
    q41 = [0.0, 15.0] + [k + 0.5 for k in range(15)] + [0.49999997, 14.499999, 14.500001, 7.4999995]
    cases.append(("ties_q4_1", np.stack([block(q41, fill=3.0), block([-1.0, 2.0, 0.5, 0.5000001, 1.25, -0.25], fill=0.0)])))
    # F16 ties (round to nearest even), overflow edge, subnormal ties; BF16 ties and overflow to inf.
    f16 = [1 + 2 ** -11, 1 + 3 * 2 ** -11, 2049.0, 2051.0, -2049.0, -2051.0, 65504.0, 65519.0, 65520.0, -65520.0,
           2 ** -25, 3 * 2 ** -25, -(2 ** -25), 5 * 2 ** -25, 2 ** -24, 6.0e-8, 6.1e-5, 2 ** -14 - 2 ** -25, 1e5, -1e9]
    bf16 = bits(0x3f808000, 0x3f818000, 0xbf808000, 0xbf818000, 0x3f80ffff, 0x3f807fff, 0x7f7fffff, 0x7f7f8000,
                0x7f7f7fff, 0xff7fffff, 0x00008000, 0x00018000, 0x80008000, 0x007fffff, 0x00000001, 0x4049_0fdb)
    cases.append(("ties_f16_bf16", np.stack([block(f16), block(bf16)])))
    # Infinities and NaNs (quiet, negative, signalling): f16/bf16 NaN rules; degenerate quant scales.
    special = bits(0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fa00000, 0x7f802000,
                   0x7fbfffff, 0x7fc0ffff)
    cases.append(("infinity_and_nan", np.stack([block(special, fill=1.0), block([np.inf], fill=0.5),
                                                block([-np.inf, np.inf], fill=-0.5), block([2.0, np.nan], fill=1.0)])))
    rows, meta, first = [], [], 0
    for name, data in cases:
        assert data.dtype == np.float32 and data.shape[1] == 32, name
        rows.append(data)
        meta.append([name, first, data.shape[0]])
        first += data.shape[0]
    inputs = np.concatenate(rows).reshape(-1)
    tensors = {"input": inputs}
    with np.errstate(all="ignore"):
        tensors["f16"] = gguf.quants.quantize(inputs, Q.F16).view(np.uint8)
        for name, qt in [("bf16", Q.BF16), ("q8_0", Q.Q8_0), ("q4_0", Q.Q4_0), ("q4_1", Q.Q4_1)]:
            tensors[name] = np.ascontiguousarray(gguf.quants.quantize(inputs.reshape(-1, 32), qt)).reshape(-1)
    path = os.path.join(OUT, "quantize_cases.safetensors")
    save_file(tensors, path, metadata={"cases": json.dumps(meta)})
    os.chmod(path, 0o644)


def pattern(n):
    i = np.arange(n)
    return (((7 * i) % 23 - 11) / 8).astype(np.float32)


def writer_reference():
    w = gguf.GGUFWriter(os.path.join(OUT, "writer_reference.gguf.bin"), "dtrain-test")   # general.architecture first
    for key, value, vt in [("t.u8", 200, VT.UINT8), ("t.i8", -100, VT.INT8), ("t.u16", 60000, VT.UINT16),
                           ("t.i16", -30000, VT.INT16), ("t.u32", 4000000000, VT.UINT32), ("t.i32", -2000000000, VT.INT32),
                           ("t.u64", 2 ** 63 + 5, VT.UINT64), ("t.i64", -(2 ** 62), VT.INT64), ("t.f32", 1.5, VT.FLOAT32),
                           ("t.f64", 0.1, VT.FLOAT64), ("t.bool", True, VT.BOOL), ("t.false", False, VT.BOOL),
                           ("t.string", "héllo wörld", VT.STRING), ("t.empty_string", "", VT.STRING)]:
        w.add_key_value(key, value, vt)
    for key, values, vt in [("t.a_u8", [0, 255, 7], VT.UINT8), ("t.a_i8", [-128, 127], VT.INT8),
                            ("t.a_u16", [65535, 1], VT.UINT16), ("t.a_i16", [-32768, 5], VT.INT16),
                            ("t.a_u32", [4294967295, 0], VT.UINT32), ("t.a_i32", [1, -2, 3], VT.INT32),
                            ("t.a_u64", [2 ** 64 - 1], VT.UINT64), ("t.a_i64", [-(2 ** 63), 9], VT.INT64),
                            ("t.a_f32", [0.25, -2.0, 3.5], VT.FLOAT32), ("t.a_f64", [0.1, -1e300], VT.FLOAT64),
                            ("t.a_bool", [True, False, True], VT.BOOL), ("t.a_str", ["a", "bc", "", "ünï"], VT.STRING)]:
        w.add_key_value(key, values, VT.ARRAY, sub_type=vt)
    w.add_key_value("t.nested", [[1, 2], [3]], VT.ARRAY)   # array of arrays of i32
    f32 = pattern(3)
    w.add_tensor("t.f32", f32)                                                     # ggml dims [3], 12 bytes
    w.add_tensor("t.f16", pattern(15).reshape(3, 5).astype(np.float16))            # [5, 3], 30 bytes
    w.add_tensor("t.bf16", gguf.quants.quantize(pattern(7), Q.BF16), raw_dtype=Q.BF16)            # [7], 14 bytes
    w.add_tensor("t.q8_0", gguf.quants.quantize(pattern(128).reshape(2, 64), Q.Q8_0), raw_dtype=Q.Q8_0)   # [64, 2]
    w.add_tensor("t.q4_0", gguf.quants.quantize(pattern(32), Q.Q4_0), raw_dtype=Q.Q4_0)          # [32], 18 bytes
    w.add_tensor("t.q4_1", gguf.quants.quantize(pattern(96).reshape(3, 32), Q.Q4_1), raw_dtype=Q.Q4_1)   # [32, 3]
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


os.makedirs(OUT, exist_ok=True)
quant_cases()
writer_reference()
