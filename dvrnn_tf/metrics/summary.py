"""The headline numbers of an evaluation, flat: the results table's columns
(`summarize`), and the JSON-safe form of a result (`finite`)."""
import math


def finite(value):
    """JSON has no NaN: NaN and infinities become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return finite(value.item())
    return value


def _likelihood_summary(lik) -> dict:
    s = {"neg_elbo": lik["neg_elbo"]["nats_per_image"],
         "neg_elbo_bpd": lik["neg_elbo"]["bits_per_dim"]}
    if "iwae" in lik:
        s["nll_iwae"] = lik["iwae"]["nats_per_image"]
        s["nll_iwae_bpd"] = lik["iwae"]["bits_per_dim"]
        s["iwae_k"] = lik["iwae"]["k"]
    s["kl_z_per_sequence"] = lik["kl_z"]["nats_per_sequence"]
    au = lik["active_units"]
    s["active_z"] = f"{au['z']['kl']}/{au['z']['dims']}"
    if "f" in au:  # models with a content code
        s["kl_f_per_sequence"] = lik["kl_f"]["nats_per_sequence"]
        s["active_f"] = f"{au['f']['kl']}/{au['f']['dims']}"
    return s


def _style_summary(sp) -> dict:
    """DESIGN 4's style R² (mean over the four measures, and slant and thickness alone)."""
    s = {"style_r2_by_style": sp["style_source"]["mean"],
         "style_r2_by_style_chance": sp["style_source"]["chance"],
         "style_r2_by_class": sp["content_class"]["mean"],
         "style_r2_by_class_chance": sp["content_class"]["chance"]}
    fidelity = sp.get("reconstruction_fidelity", {}).get("r2", {})
    for measure in ("slant", "thickness"):
        if fidelity.get(measure) is not None:
            s[f"{measure}_r2_reconstruction"] = fidelity[measure]
    for measure in ("slant", "thickness"):  # the two the disentanglement targets name
        for by, key in (("style", "style_source"), ("class", "content_class")):
            value = sp[key].get("per_measure", {}).get(measure)
            if value is not None:
                s[f"{measure}_r2_by_{by}"] = value
    return s


def summarize(result) -> dict:
    """The headline numbers of an evaluation, flat (the results table's columns)."""
    s = _likelihood_summary(result["likelihood"]) if result.get("likelihood") else {}
    if "judge" in result and "reconstruction_accuracy" in result["judge"]:
        s["judge_reconstruction_accuracy"] = result["judge"]["reconstruction_accuracy"]
    if "swap" in result:
        s["swap_accuracy"] = result["swap"]["accuracy"]
        s["swap_first_step"] = result["swap"]["first_step"]
        s["swap_later_steps"] = result["swap"]["later_steps"]
    if "label_preservation" in result:
        s["label_preservation"] = result["label_preservation"]["posterior_f"]["accuracy"]
    for name, probes in result.get("probes", {}).get("factors", {}).items():
        for code in ("f", "z_sequence", "z_frame"):
            if code in probes:
                s[f"probe_{code}[{name}]"] = probes[code]
    if "chance" in result.get("probes", {}):  # a "class" factor: DESIGN 4's style leakage
        leak = result["probes"]
        # A beta-VAE's frames are independent images: its probe is per frame (a sequence's
        # 8 codes of one class would reveal the class by their number alone).
        s["probe_z"] = leak["z_frame"] if result.get("independent_frames") else leak["z_sequence"]
        s["probe_chance"] = leak["chance"]
        if "f" in leak:
            s["probe_f"] = leak["f"]
    if "style_preservation" in result:
        s.update(_style_summary(result["style_preservation"]))
    if "knn" in result:
        s["knn_accuracy"] = result["knn"]["accuracy"]
    if "concepts" in result:
        s["cluster_accuracy"] = result["concepts"]["accuracy"]
        s["cluster_nmi"] = result["concepts"]["nmi"]
        s["cluster_accuracy_chance"] = result["concepts"]["chance_accuracy"]
        if "kmeans" in result["concepts"]:
            s["cluster_accuracy_kmeans"] = result["concepts"]["kmeans"]["accuracy"]
            s["cluster_nmi_kmeans"] = result["concepts"]["kmeans"]["nmi"]
    from dvrnn_tf.metrics.protocol import summary as protocol_summary
    s.update(protocol_summary(result))
    training = result.get("training") or {}
    if training.get("train_seconds_this_process") is not None:
        s["train_seconds"] = training["train_seconds_this_process"]
    return s
