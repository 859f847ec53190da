#!/usr/bin/env python3
"""Alternates `suti bench train` and `suti bench sample` between variants for several rounds and
prints each variant's median: an A/B of binaries or environments on a shared, noisy machine, where
only figures taken close together compare.

    benches/ab.py --rounds 3 --presets tiny 'new||target/debug/suti' 'old||/tmp/old/suti' \
        'pool|CANDLE_NUM_THREADS=2|target/debug/suti'

A variant is `label|ENV=VALUE,…|binary`. Every run gets RAYON_NUM_THREADS (--threads, default 2).
"""
import argparse
import json
import os
import statistics
import subprocess


def bench(binary, env, *args):
    out = subprocess.run([binary, "bench", *args, "--json"], env=env, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)["results"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", help="label|ENV=VALUE,…|binary")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--presets", default="tiny")
    parser.add_argument("--threads", default="2")
    args = parser.parse_args()
    variants = [v.split("|") for v in args.variants]
    figures = {label: {} for label, _, _ in variants}
    for _ in range(args.rounds):
        for label, envs, binary in variants:
            env = dict(os.environ, RAYON_NUM_THREADS=args.threads)
            env.update(kv.split("=", 1) for kv in envs.split(",") if kv)
            for r in bench(binary, env, "train", "--presets", args.presets, "--batch", "32",
                           "--steps", "10"):
                figures[label].setdefault(("train", r["preset"], "img/s"), []).append(
                    r["images_per_second"])
            for r in bench(binary, env, "sample", "--presets", args.presets, "--images", "4",
                           "--steps", "25"):
                figures[label].setdefault(("sample", r["preset"], "ms"), []).append(
                    r["text_only_ms"])
    for label, rows in figures.items():
        for (kind, preset, unit), values in rows.items():
            print(f"{label:<12} {kind:<6} {preset:<6} median {statistics.median(values):8.1f} "
                  f"{unit:<5} runs {[round(v, 1) for v in values]}")


if __name__ == "__main__":
    main()
