"""Time the synthetic B-mode phantom: 300 images of 128 x 128 pixels (the size the bundles use on CPU).

Run: ``python benchmarks/bench_phantom.py [--images 300] [--image-size 128] [--repeats 3]``.
Prints the median wall-clock time of generating the pixels (no file writing) and of writing a full
BUSI-layout data set with its datalist.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from monai_sam.data import make_phantom_dataset, simulate_bmode

KINDS = ("benign", "malignant", "normal")


def _time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Print the phantom's generation and writing times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    per_class = args.images // len(KINDS)
    kinds = [k for k in KINDS for _ in range(per_class)]

    pixels = _time(
        lambda: simulate_bmode(kinds, args.image_size, 0.5, np.random.default_rng(0)), args.repeats
    )

    def write() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            make_phantom_dataset(tmp, num_per_class=per_class, image_size=args.image_size, seed=0)

    written = _time(write, args.repeats)
    print(f"{len(kinds)} images of {args.image_size} px: pixels {pixels:.2f} s, data set {written:.2f} s")


if __name__ == "__main__":
    main()
