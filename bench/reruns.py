"""What a nightly rerun costs before any model work: the checkpoint fingerprint and the per-document up-to-date
decision, side by side with what they replace or avoid.

1. Checkpoint identity: `checkpoints.fingerprint_folder` (config + each weight file's header and the first and last
   4 KiB of every tensor) against a full SHA-256 of the same weights, on a synthetic safetensors checkpoint of
   --weights-mb MB in --tensors tensors (DeepSeek-OCR has about 2,700).
2. Up-to-date decision (`run.state.decide`) per document for --docs finished documents (md + json written with
   their state record): with the recorded mtimes (the usual nightly case) and after every output was touched (the
   digests are computed again).

Best of --repeat runs (the least disturbed on a shared machine). No model runs.

    python bench/reruns.py --weights-mb 1024 --tensors 2700 --docs 500 --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import tempfile
import time
from pathlib import Path

from deepocr_cli.checkpoints import fingerprint_folder
from deepocr_cli.outputs.formats import write_document
from deepocr_cli.outputs.paths import output_paths
from deepocr_cli.outputs.results import DocResult, PageResult
from deepocr_cli.run.state import decide, sha256_file, write_state


def _checkpoint(folder: Path, megabytes: int, tensors: int) -> None:
    """config.json and one safetensors file of random-looking bytes: a valid header, ``tensors`` uint8 tensors."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "deepseek_vl_v2"}))
    n = megabytes << 20
    step = n // tensors
    spans = [(i * step, n if i == tensors - 1 else (i + 1) * step) for i in range(tensors)]
    header = json.dumps({f"layer.{i}.weight": {"dtype": "U8", "shape": [e - b], "data_offsets": [b, e]}
                         for i, (b, e) in enumerate(spans)}).encode()
    with (folder / "model.safetensors").open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        block = os.urandom(1 << 20)
        for _ in range(megabytes):
            f.write(block)


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _docs(folder: Path, count: int) -> list:
    out = []
    for i in range(count):
        paths = output_paths(folder / f"doc{i:04d}.pdf", folder, None)
        pages = [PageResult(index=p, width=1000, height=1400, mode="base", grid=(1, 1), vision_tokens=256,
                            image_embeddings=273, raw_text="Some text. " * 300, generated_tokens=900)
                 for p in range(10)]
        doc = DocResult(source=folder / f"doc{i:04d}.pdf", source_rel=f"doc{i:04d}.pdf", size=1, sha256="0" * 64,
                        page_count=10, model={}, settings={"state_key": "k"}, pages=pages)
        write_document(doc, paths, ("md", "json"))
        write_state(paths, "k", doc, ("md", "json"))
        out.append(paths)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights-mb", type=int, default=1024)
    ap.add_argument("--tensors", type=int, default=2700)
    ap.add_argument("--docs", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "ckpt"
        _checkpoint(ckpt, args.weights_mb, args.tensors)
        weights = ckpt / "model.safetensors"
        fp = _best(lambda: fingerprint_folder(ckpt), args.repeat)
        full = _best(lambda: hashlib.sha256(weights.read_bytes()).hexdigest(), args.repeat)
        print(f"checkpoint identity, {args.weights_mb} MB of weights in {args.tensors} tensors:")
        print(f"  fingerprint (header + samples)    {fp * 1000:9.1f} ms")
        print(f"  full SHA-256 of the weights       {full * 1000:9.1f} ms")
        weights.unlink()

        folder = Path(tmp) / "docs"
        folder.mkdir()
        paths = _docs(folder, args.docs)
        size = sum(p.markdown.stat().st_size + p.json.stat().st_size for p in paths) / len(paths) / 1024
        same = _best(lambda: [decide(p, "k", ("md", "json")) for p in paths], args.repeat)
        assert all(decide(p, "k", ("md", "json")).action == "current" for p in paths)
        for p in paths:
            for f in (p.markdown, p.json):
                os.utime(f)
        touched = _best(lambda: [decide(p, "k", ("md", "json")) for p in paths], args.repeat)
        digest = _best(lambda: [sha256_file(f) for p in paths for f in (p.markdown, p.json)], args.repeat)
        print(f"up-to-date decision, {args.docs} documents (md + json, {size:.0f} KB per document):")
        print(f"  recorded mtimes (nightly case)    {same / args.docs * 1e6:9.1f} us per document")
        print(f"  outputs touched (digests again)   {touched / args.docs * 1e6:9.1f} us per document")
        print(f"  (their SHA-256 alone)             {digest / args.docs * 1e6:9.1f} us per document")


if __name__ == "__main__":
    main()
