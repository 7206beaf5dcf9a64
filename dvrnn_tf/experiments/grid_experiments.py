"""The experiments of the second paper that are judged by their grids (DESIGN 3).

* `bias`: (shared, shared), (split enc, shared dec), (shared enc, split dec), (split, split).
* `layer_split`: the encoder split while decoder layer l + k is split (k = 0..3), and the
  decoder split while encoder layer l - k is split (appendix A, Fig. 4).
* `competition`: x -> omega_q -> T_y -> omega_p under four conditions (standard, y masked from
  the encoder, encoder layer l-3 split, decoder layer l+3 split), for rotations and for the
  reflection; who wins is decided from the scores of mu_p's and mu'_p's grids.

Settings, data, training and figures: `dvrnn_tf.experiments.framework` (where the layer
numbering is explained).
"""
from __future__ import annotations

import os
import time

from dvrnn_tf.experiments.framework import (CONDITIONS, TRANSFORM_KINDS, Settings, _save_grid,
                                            _write_json, grids_figure, load_data, model_grids,
                                            prior_codes, train_cvae)

BIAS_CONFIGS = {  # name -> (split_encoder, split_decoder)
    "shared_shared": ("none", "none"),
    "split_enc": ("all", "none"),
    "split_dec": ("none", "all"),
    "split_split": ("all", "all"),
}


def _scored_model(settings, train_set, seed, judge, z, **kwargs):
    from dvrnn_tf.experiments.scoring import score_grid

    model, info = train_cvae(settings, train_set, seed, **kwargs)
    grids = model_grids(model, z)
    scores = {k: score_grid(g, judge, scale=settings.morph_scale) for k, g in grids.items()}
    return model, info, grids, scores


def bias(settings: Settings, seed: int, judge, out_dir, data=None) -> dict:
    """Fig. 2: the four (encoder, decoder) split settings, each grid scored."""
    train_set, _ = data or load_data(settings)
    z = prior_codes(settings.z_dim, settings.num_styles, seed)
    result = {"experiment": "bias", "seed": seed, "settings": settings.to_dict(), "runs": {}}
    panels = []
    for name, (enc, dec) in BIAS_CONFIGS.items():
        _, info, grids, scores = _scored_model(settings, train_set, seed, judge, z,
                                               split_encoder=enc, split_decoder=dec)
        png = _save_grid(grids["mu_p"], os.path.join(out_dir, f"bias_{name}.png"))
        result["runs"][name] = {"split_encoder": enc, "split_decoder": dec, "train": info,
                                "score": scores["mu_p"], "grid_png": png}
        panels.append((f"{name} (enc {enc}, dec {dec})", grids["mu_p"], scores["mu_p"]))
    result["figure"] = grids_figure(panels, os.path.join(out_dir, "bias.png"), columns=2)
    _write_json(os.path.join(out_dir, "bias.json"), result)
    return result


def layer_split(settings: Settings, seed: int, judge, out_dir, data=None) -> dict:
    """Appendix A, Fig. 4: encoder split + decoder layer l+k split (top), decoder split +
    encoder layer l-k split (bottom), k = 0..3 (fewer when the networks are shallower)."""
    train_set, _ = data or load_data(settings)
    z = prior_codes(settings.z_dim, settings.num_styles, seed)
    layers = settings.num_hidden + 1
    result = {"experiment": "layer_split", "seed": seed, "settings": settings.to_dict(),
              "encoder_split": {}, "decoder_split": {}}
    panels = []
    for k in range(min(4, layers)):
        _, info, grids, scores = _scored_model(settings, train_set, seed, judge, z,
                                               split_encoder="all", split_decoder=[k])
        result["encoder_split"][f"decoder_l+{k}"] = {"decoder_layer": k, "train": info,
                                                     "score": scores["mu_p"]}
        panels.append((f"enc split, dec layer l+{k} split", grids["mu_p"], scores["mu_p"]))
    for k in range(min(4, layers)):
        layer = layers - 1 - k
        _, info, grids, scores = _scored_model(settings, train_set, seed, judge, z,
                                               split_encoder=[layer], split_decoder="all")
        result["decoder_split"][f"encoder_l-{k}"] = {"encoder_layer": layer, "train": info,
                                                     "score": scores["mu_p"]}
        panels.append((f"dec split, enc layer l-{k} split", grids["mu_p"], scores["mu_p"]))
    result["figure"] = grids_figure(panels, os.path.join(out_dir, "layer_split.png"),
                                    columns=min(4, layers))
    _write_json(os.path.join(out_dir, "layer_split.json"), result)
    return result


def condition_kwargs(condition: str, num_hidden: int) -> dict:
    """CVAE arguments of a competition condition."""
    layers = num_hidden + 1
    if condition == "standard":
        return {}
    if condition == "masked":
        return {"mask_label": True}
    if condition == "encoder_split":  # encoder layer l - 3, l = the last layer
        return {"split_encoder": [max(0, layers - 4)]}
    if condition == "decoder_split":  # decoder layer l + 3, l = the first layer
        return {"split_decoder": [min(layers - 1, 3)]}
    raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")


def competition_run(settings: Settings, seed: int, judge, condition: str, transform: str,
                    data=None, out_dir=None) -> dict:
    """One competition: train x -> omega_q -> T_y -> omega_p, score mu_p's and mu'_p's grids,
    decide the winner. Writes `competition_<transform>_<condition>.png` when out_dir is given."""
    from dvrnn_tf.experiments.scoring import decide_winner

    if transform not in TRANSFORM_KINDS:
        raise ValueError(f"transform must be one of {TRANSFORM_KINDS}, got {transform!r}")
    train_set, _ = data or load_data(settings)
    z = prior_codes(settings.z_dim, settings.num_styles, seed)
    start, cpu = time.perf_counter(), time.process_time()
    _, info, grids, scores = _scored_model(
        settings, train_set, seed, judge, z, label_transform=transform,
        **condition_kwargs(condition, settings.num_hidden))
    result = {"experiment": "competition", "seed": seed, "condition": condition,
              "transform": transform, "train": info, "score_mu_p": scores["mu_p"],
              "score_mu_p_prime": scores["mu_p_prime"],
              "winner": decide_winner(scores["mu_p"], scores["mu_p_prime"])}
    if out_dir is not None:
        result["figure"] = grids_figure(
            [(f"mu_p ({transform}, {condition})", grids["mu_p"], scores["mu_p"]),
             (f"mu'_p = mu_p(y, T_y z); winner: {result['winner']}", grids["mu_p_prime"],
              scores["mu_p_prime"])],
            os.path.join(out_dir, f"competition_{transform}_{condition}.png"), columns=1)
    result["seconds"] = time.perf_counter() - start
    result["cpu_seconds"] = time.process_time() - cpu
    return result


def competition(settings: Settings, seed: int, judge, out_dir, data=None,
                conditions=CONDITIONS, transforms=TRANSFORM_KINDS) -> dict:
    """Appendix B, Figs. 5 and 6: every condition under each transform."""
    data = data or load_data(settings)
    result = {"experiment": "competition", "seed": seed, "settings": settings.to_dict(),
              "runs": {}}
    for transform in transforms:
        for condition in conditions:
            run = competition_run(settings, seed, judge, condition, transform, data=data,
                                  out_dir=out_dir)
            result["runs"][f"{transform}/{condition}"] = run
    _write_json(os.path.join(out_dir, "competition.json"), result)
    return result
