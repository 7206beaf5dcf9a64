"""Sprites (Li & Mandt 2018), the field's benchmark: `--dataset=sprites --manual_dir=<sheets>`.

8-frame 64x64 RGB sequences of 1296 cartoon characters (body, bottomwear, topwear, hair: 6
variants each) walking, spellcasting and slashing towards the front, left or right, generated
offline from the Liberated Pixel Cup sheets by DESIGN 6's recipe (`dvrnn_tf.data.builders.
sprites`) and cached once under --data_dir with the sheets' licence and attribution. Split by
the original script's seeded permutation of the characters: 1000 train (of which
--sprites_validation_characters are validation), 296 test; every character in all 9 motions.
"""
import pathlib

from dvrnn_tf.data.array_sequences import ArraySequences
from dvrnn_tf.data.builders import sprites
from dvrnn_tf.data.registry import SequenceSource, register
from dvrnn_tf.data.settings import DATA_DIR, MANUAL_DIR
from dvrnn_tf.data import sequence_cache
from dvrnn_tf.data.sequence_cache import cache_root
from dvrnn_tf.data.spec import DataSpec, Factor
from dvrnn_tf.settings import Setting

VALIDATION_CHARACTERS = Setting(
    "sprites_validation_characters", 100, "Sprites: characters of the 1000 train ones held out "
    "as validation (their 9 sequences each).", lower=1, upper=999)
FACTORS = (*(Factor(name, sprites.VARIANTS) for name in sprites.STATIC_FACTORS),
           Factor("action", len(sprites.ACTIONS)), Factor("direction", len(sprites.DIRECTIONS)),
           Factor("motion", sprites.MOTIONS))


@register
class Sprites(SequenceSource):
    name = "sprites"
    settings = (MANUAL_DIR, DATA_DIR, VALIDATION_CHARACTERS)
    metrics = ("likelihood", "probes", "fixed_dynamics", "fixed_content", "factor_swap")
    # The field's protocol (`dvrnn_tf.metrics.protocol`): what f and what z should carry.
    protocol_factors = {"content": sprites.STATIC_FACTORS, "dynamics": ("motion",)}
    summary = "Sprites: 8 frames of 64x64x3, 1296 characters x 9 motions (--manual_dir: sheets)"

    @classmethod
    def check(cls, dataset, values):
        if not values.manual_dir:
            raise ValueError("--dataset=sprites is generated from the character sheets: pass "
                             "--manual_dir=<their folder> (e.g. ../shared/data/sprites)")

    def _entry(self):
        return sprites.prepare(pathlib.Path(self.values.manual_dir),
                               cache_root(self.values.data_dir),
                               self.values.sprites_validation_characters)

    def raw_arrays(self, split):
        """(x uint8 [N, 8, 64, 64, 3] memory-mapped, {label: int64 [N]}) of a split, as
        prepared: no scaling, no binarization (what the protocol's judge learns from)."""
        return sequence_cache.load(self._entry(), split)

    def spec(self):
        return DataSpec((sprites.CELL, sprites.CELL, 3), sprites.FRAMES, FACTORS)

    def _make_split(self, name):
        x, labels = sequence_cache.load(self._entry(), name)
        return ArraySequences(x, {f.name: labels[f.name] for f in FACTORS}, FACTORS,
                              binarize="dynamic" if self.binarize else "none", seed=self.seed,
                              name=name)
