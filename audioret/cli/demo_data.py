"""`python -m audioret.cli.demo_data`: write the synthetic Clotho-layout demo dataset (pipeline/demo_data.py).

A developer's tool for `make demo`, scripts/demo.sh, the tests and the benchmarks, not a command of `audioret`:
the options are parsed here so the pipeline module only generates.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from audioret.pipeline.demo_data import generate

DESCRIPTION = "A small synthetic captioned dataset in Clotho layout, for `make demo` and end-to-end tests."


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=DESCRIPTION,
                                epilog="example: python -m audioret.cli.demo_data --out demo/data --clips 240,60,60")
    p.add_argument("--out", required=True, type=Path, help="dataset root (Clotho layout) to write")
    p.add_argument("--clips", default="240,60,60", help="clips per split: development,validation,evaluation")
    p.add_argument("--seconds", type=float, default=3.0, help="clip length in seconds")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        counts = tuple(int(c) for c in a.clips.split(","))
        assert len(counts) == 3 and min(counts) > 0
    except (ValueError, AssertionError):
        p.error(f"--clips {a.clips!r}: expected three positive integers like 240,60,60")
    done = generate(a.out, counts, a.seconds, a.seed)
    print(f"wrote {sum(done.values())} clips ({', '.join(f'{k} {v}' for k, v in done.items())}) to {a.out}")


if __name__ == "__main__":
    main()
