"""Byte-deterministic writers for glassbox fixtures (safetensors, npz) and their metadata.

safetensors' own `save_file` serialises `__metadata__` from a Rust HashMap, so the key order (and
therefore the file bytes) changes from run to run. Fixtures must be byte-identical across
regenerations, so this module writes the (simple, documented) safetensors layout itself:
8-byte little-endian header length, JSON header (keys sorted, `__metadata__` first, padded with
spaces to a multiple of 8), then the tensors' bytes in header order. Every file written here is
read back with the official `safetensors` reader before returning.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

FORMAT = "glassbox-fixture"
FORMAT_VERSION = "1"

_DTYPES = {
    torch.float32: "F32",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.bool: "BOOL",
    torch.uint8: "U8",
}


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> None:
    """Writes `tensors` (sorted by name) with string `metadata`, deterministically."""
    header: dict[str, object] = {}
    if metadata is not None:
        if not all(isinstance(v, str) for v in metadata.values()):
            raise TypeError("safetensors metadata values must be strings")
        header["__metadata__"] = dict(sorted(metadata.items()))
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype not in _DTYPES:
            raise TypeError(f"{name}: unsupported dtype {t.dtype}")
        data = _tensor_bytes(t)
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for c in chunks:
            f.write(c)
    # Read back with the official reader.
    with safe_open(str(path), framework="pt") as f:
        got_meta = f.metadata()
        if metadata is not None and got_meta != metadata:
            raise AssertionError(f"{path}: metadata did not round-trip")
        for name, t in tensors.items():
            if not torch.equal(f.get_tensor(name), t.detach().cpu()):
                raise AssertionError(f"{path}: tensor {name} did not round-trip")


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like numpy.savez (uncompressed, one `NAME.npy` member each) but with fixed zip timestamps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, buf.getvalue())
    with np.load(path) as back:
        for name, a in arrays.items():
            if not np.array_equal(back[name], a):
                raise AssertionError(f"{path}: {name} did not round-trip")


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def fixture_metadata(generator: str, description: dict, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The `__metadata__` every glassbox fixture carries (see test/reference/fixtures.test.ts)."""
    import transformers

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generator": generator,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "description": json.dumps(description, sort_keys=True, separators=(",", ":")),
    }
    if extra:
        meta.update(extra)
    return meta


def tensor_listing(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, object]]:
    return {k: {"dtype": _DTYPES[v.dtype], "shape": list(v.shape)} for k, v in sorted(tensors.items())}
