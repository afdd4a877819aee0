"""The end of a detection job: a work folder's lines into the final COCO-results JSON, before and after.

    python bench/assembly.py [--images 20000] [--dets-per-image 10]

Writes a work folder as `incdet detect` leaves it (one part file, one line per image holding its
COCO-results records), then times, side by side in one process, on the same folder:

- before: the job's end as it was (an index of one Python object per image; ``summary()`` then
  ``finish()``, each scanning and parsing every line once more, and each record written with
  ``json.dumps(indent=1)`` plus ``textwrap.indent``), kept here as the baseline;
- after: :meth:`incdet.engine.work.WorkFolder.finish` (an index of numpy arrays filled while the
  parts were written or scanned once, one pass that parses each line once and writes each record
  with a template).

Both must write byte-identical files. It prints seconds per 1,000 images for each, their ratio,
and the index's memory per image (``tracemalloc``).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import textwrap
import time
import tracemalloc
from collections import Counter
from pathlib import Path

from incdet.engine.plan import Shard
from incdet.engine.work import MANIFEST, WorkFolder
from incdet.io import atomic_path
from incdet.structures import ImageRecord


def make_folder(root: Path, images: int, per_image: int) -> tuple[Path, dict, list[ImageRecord]]:
    """A finished job's work folder: ``images`` lines, ``per_image`` records each."""
    rng = random.Random(0)
    records = [ImageRecord(root / "images" / f"{i:07d}.jpg", f"{i:07d}.jpg", i) for i in range(images)]
    folder = WorkFolder.open(root / "dets.json.parts", {"bench": True}, records, Shard())
    with open(folder.path / "part-00000.jsonl", "w") as f:
        for r in records:
            dets = [{"image_id": r.image_id, "file_name": r.key, "category_id": rng.randint(1, 200), "category_name": "zebra",
                     "bbox": [round(rng.uniform(0, 400), 2), round(rng.uniform(0, 300), 2), round(rng.uniform(5, 99), 2),
                              round(rng.uniform(5, 99), 2)], "score": round(rng.random(), 5)} for _ in range(per_image)]
            line = {"image_id": r.image_id, "key": r.key, "stamp": [1000 + r.image_id, 1], "proposals":
                    {"selective_search": 1500, "multibox": 180, "both": 20, "total": 1700}, "records": dets}
            f.write(json.dumps(line) + "\n")
    return folder.path, folder.manifest, records


def before(path: Path, out: Path) -> None:
    """The job's end as it was: dict index, summary() and finish() each re-indexing and re-parsing."""

    def index() -> tuple[list[Path], dict[int, tuple[int, int, int]]]:
        parts, found = sorted(path.glob("part-*.jsonl")), {}
        for number, part in enumerate(parts):
            offset = 0
            with open(part, "rb") as f:
                for raw in f:
                    found[int(json.loads(raw)["image_id"])] = (number, offset, len(raw))
                    offset += len(raw)
        return parts, found

    def lines():
        parts, found = index()
        handles = {}
        for _, (number, offset, length) in sorted(found.items()):
            handle = handles.setdefault(number, open(parts[number], "rb"))
            handle.seek(offset)
            yield json.loads(handle.read(length))

    summary = Counter()
    for line in lines():  # summary()
        summary["images"] += 1
        summary.update(line.get("proposals", {}))
    with atomic_path(out) as tmp, open(tmp, "w") as f:  # finish()
        first = True
        for line in lines():
            for record in line.get("records", []):
                f.write(("[\n" if first else ",\n") + textwrap.indent(json.dumps(record, indent=1), " "))
                first = False
        f.write("[]\n" if first else "\n]\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--dets-per-image", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path, manifest, records = make_folder(root, args.images, args.dets_per_image)
        keep = root / "copy.parts"  # for the memory measurement: finish() removes the folder
        shutil.copytree(path, keep)

        start = time.perf_counter()
        before(path, root / "before.json")
        old = time.perf_counter() - start

        start = time.perf_counter()
        folder = WorkFolder(path, json.loads((path / MANIFEST).read_text()))  # scans the parts, as a resumed job does
        summary = folder.finish(root / "after.json")
        new = time.perf_counter() - start

        tracemalloc.start()
        kept = WorkFolder(keep, manifest)
        index_bytes = tracemalloc.get_traced_memory()[0]  # while the folder (its index) is alive
        tracemalloc.stop()
        del kept

        same = (root / "before.json").read_bytes() == (root / "after.json").read_bytes()
        per = 1000 / args.images
        print(f"{args.images} images x {args.dets_per_image} detections ({summary.detections} records), one part file")
        print(f"before: {old * per:.3f} s per 1,000 images (summary + finish, 4 parses a line, json indent)")
        print(f"after:  {new * per:.3f} s per 1,000 images (index scan + one pass, 2 parses a line); byte-identical: {same}")
        print(f"speed-up: {old / new:.2f}x; index memory {index_bytes / args.images:.0f} B per image")


if __name__ == "__main__":
    main()
