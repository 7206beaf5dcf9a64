"""How far apart, in pixels, the Sprites characters are that differ in one static factor.

    PYTHONPATH=. python scripts/sprites_factor_distances.py [--sheets=../shared/data/sprites]
        [--characters=4] [--seed=0] [--scale=0.2]

For each static factor (body, bottomwear, topwear, hair) and each of `--characters` random
characters, the 6 characters that differ from it only in that factor are generated (all 9
motions, 8 frames each); for every pair of variants the squared RGB distance ([0, 1] per
channel) summed over a frame is averaged over frames, motions and base characters. Printed per
factor: its mean over the 15 pairs, its closest pair, and what confusing that pair costs a
Gaussian likelihood of scale `--scale` (distance / (2 scale^2) nats per frame): the signal
the ELBO gives a model for keeping the factor (docs/sprites.md).
"""
import argparse
import itertools

import numpy as np

from dvrnn_tf.data.builders import sprites

STATIC = ("body", "bottomwear", "topwear", "hair")
VARIANTS = sprites.VARIANTS
WEIGHTS = VARIANTS ** np.arange(len(STATIC))[::-1]  # the index of sprites._parts: b·216 + m·36 + t·6 + h


def pair_distances(frames):
    """frames [V, ..., H, W, C] (the same motions for V variants) -> {(a, b): mean over the
    frames of sum over H, W, C of (frames[a] - frames[b])^2}, a < b."""
    frames = np.asarray(frames, np.float64)
    return {(a, b): float(np.square(frames[a] - frames[b]).sum(axis=(-1, -2, -3)).mean())
            for a, b in itertools.combinations(range(len(frames)), 2)}


def factor_distances(sheets, characters=4, seed=0):
    """{factor: {(a, b): distance}}, each pair's distance averaged over `characters` random
    characters whose other factors are held fixed."""
    bases = np.random.default_rng(seed).integers(0, VARIANTS, size=(characters, len(STATIC)))
    out = {}
    for k, factor in enumerate(STATIC):
        per_base = []
        for base in bases:
            parts = np.repeat(base[None], VARIANTS, axis=0)
            parts[:, k] = np.arange(VARIANTS)
            x, _ = sprites.generate(sheets, parts @ WEIGHTS)  # [6 * 9, 8, 64, 64, 3], by character
            per_base.append(pair_distances(x.reshape(VARIANTS, -1, *x.shape[2:]) / 255.0))
        out[factor] = {p: float(np.mean([d[p] for d in per_base])) for p in per_base[0]}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sheets", default="../shared/data/sprites")
    parser.add_argument("--characters", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=0.2)
    args = parser.parse_args()
    print("factor      mean  closest pair   nats/frame at that pair")
    for factor, pairs in factor_distances(args.sheets, args.characters, args.seed).items():
        closest = min(pairs, key=pairs.get)
        print(f"{factor:10s} {np.mean(list(pairs.values())):6.1f} {pairs[closest]:6.1f} {closest}"
              f"   {pairs[closest] / (2 * args.scale ** 2):6.0f}")


if __name__ == "__main__":
    main()
