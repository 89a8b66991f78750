#!/usr/bin/env python3
"""Wasm modules that differ only in how their code is cut into functions, for
`deployed_rss.py`: what Envoy's RSS follows, the module's size or its largest function.

Why: Envoy compiles a wasm module with V8's TurboFan when it loads it, and its allocator
keeps much of the memory that compile needed at its peak (bench/README.md, "Fourth pass",
"Fifth pass"). These modules are the wasm floor (bench/wasm_floor) plus synthetic functions
the floor never calls: the same amount of code (about 400 KB) as ten 40 KB functions, twenty
of 20 KB, forty of 10 KB, a hundred of 4 KB or two hundred of 2 KB; also one 40 KB function
alone, and the floor with nothing added. Each synthetic function is a run of blocks, each an
add, a compare and branch, a multiply, a load and an xor over eight locals: branchy integer
code like a compiler's output, not a copy of it.

Usage: bench/synthetic_functions.py OUT_DIR, then (after a `deployed_cost.py --keep KEEP` run)
    bench/deployed_rss.py KEEP floor-nothing=floor:OUT_DIR/nothing.wasm ... (the command is printed)
"""

import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deployed_cost as dc  # noqa: E402  (builds the wasm floor)

# (name, functions, blocks per function); a block is about 40 bytes of code.
SHAPES = [("nothing", 0, 0), ("one-40k", 1, 1000), ("ten-40k", 10, 1000), ("twenty-20k", 20, 500),
          ("forty-10k", 40, 250), ("hundred-4k", 100, 100), ("two-hundred-2k", 200, 50)]
LOCALS = 8


def uleb(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def sleb(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def read_uleb(data, pos):
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def sections(module):
    pos, out = 8, []
    while pos < len(module):
        kind = module[pos]
        size, pos = read_uleb(module, pos + 1)
        out.append([kind, bytes(module[pos:pos + size])])
        pos += size
    return out


def imported_functions(payload):
    count, pos = read_uleb(payload, 0)
    functions = 0
    for _ in range(count):
        for _ in range(2):
            length, pos = read_uleb(payload, pos)
            pos += length
        kind = payload[pos]
        pos += 1
        if kind == 0:
            _, pos = read_uleb(payload, pos)
            functions += 1
        elif kind in (1, 2):
            pos += 1 if kind == 1 else 0
            flags, pos = read_uleb(payload, pos)
            _, pos = read_uleb(payload, pos)
            if flags & 1:
                _, pos = read_uleb(payload, pos)
        elif kind == 3:
            pos += 2
    return functions


def body(blocks, rng):
    code = bytearray()
    for _ in range(blocks):
        a, b, c, d = (rng.randrange(LOCALS) for _ in range(4))
        code += b"\x02\x40"                                                     # block
        code += b"\x20" + uleb(a) + b"\x20" + uleb(b) + b"\x6a"                 # a + b
        code += b"\x22" + uleb(c)                                               # tee c
        code += b"\x41" + sleb(rng.randrange(1, 1 << 20)) + b"\x4b" + b"\x0d\x00"  # c > k: br_if out
        code += b"\x20" + uleb(c) + b"\x41" + sleb(rng.randrange(1, 1 << 12)) + b"\x6c" + b"\x21" + uleb(d)  # d = c * k
        code += b"\x20" + uleb(a) + b"\x41" + sleb(1020) + b"\x71"              # a & 1020
        code += b"\x28\x02" + uleb(rng.randrange(64) * 4)                       # i32.load
        code += b"\x20" + uleb(d) + b"\x73" + b"\x21" + uleb(b)                 # b = load ^ d
        code += b"\x0b"                                                         # end
    code += b"\x20\x00\x20\x01\x6a"                                             # return l0 + l1
    full = uleb(1) + uleb(LOCALS - 1) + b"\x7f" + code + b"\x0b"               # 7 i32 locals beside the param
    return uleb(len(full)) + full


def with_functions(module, count, blocks, seed=7):
    """`module` plus `count` exported functions (i32) -> i32 of `blocks` blocks each; its
    custom sections (names) are left out, as their indices would no longer match."""
    rng = random.Random(seed)
    parts = sections(module)
    kinds = [k for k, _ in parts]
    imports = imported_functions(parts[kinds.index(2)][1]) if 2 in kinds else 0
    out = bytearray(module[:8])
    for kind, payload in parts:
        if kind == 0:
            continue
        count_before, pos = read_uleb(payload, 0)
        rest = payload[pos:]
        if kind == 1:
            type_index = count_before
            payload = uleb(count_before + 1) + rest + b"\x60\x01\x7f\x01\x7f"
        elif kind == 3:
            first = imports + count_before
            payload = uleb(count_before + count) + rest + uleb(type_index) * count
        elif kind == 7:
            exports = b"".join(uleb(len(n)) + n + b"\x00" + uleb(first + i)
                               for i, n in enumerate(f"synthetic_{i}".encode() for i in range(count)))
            payload = uleb(count_before + count) + rest + exports
        elif kind == 10:
            payload = uleb(count_before + count) + rest + b"".join(body(blocks, rng) for _ in range(count))
        out += bytes([kind]) + uleb(len(payload)) + payload
    return bytes(out)


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    dc.build_floor()
    with open(dc.FLOOR_WASM, "rb") as f:
        floor = f.read()
    builds = []
    for name, count, blocks in SHAPES:
        path = os.path.join(out_dir, f"{name}.wasm")
        with open(path, "wb") as f:
            f.write(with_functions(floor, count, blocks))
        print(f"{path}: {count} functions of {blocks} blocks, {os.path.getsize(path):,} bytes", file=sys.stderr)
        builds.append(f"floor-{name}=floor:{path}")
    print("bench/deployed_rss.py KEEP_DIR " + " ".join(builds))


if __name__ == "__main__":
    main()
