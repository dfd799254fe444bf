"""The seed papers' headline claims, each as comparisons of grid cells.

A `Claim` quotes (or closely paraphrases) the paper, names the figure or
table and section it comes from and the paper's numbers, and lists its
`Comparison`s: a treatment `Arm` and a control `Arm`, each a cell of the
reproduce grid and a metric read from every seed's run (both in
pipelines/claim_cells.py), with the claimed direction. A claim the list
of CLAIMS leaves out is one our grid cannot test with a one-sided test:
"equally effective" (hernandez-garcia2025 §4, the large network without
LayerNorm) or rankings over many conditions. pipelines/verdict.py judges
each comparison.
"""

import dataclasses

from pipelines import claim_cells as cc


@dataclasses.dataclass(frozen=True)
class Arm:
    label: str  # e.g. 'i.i.d.+zap'
    cell: str  # '<study>/<cell>' of the reproduce grid
    metric: str  # a key of METRICS


@dataclasses.dataclass(frozen=True)
class Comparison:
    treatment: Arm
    control: Arm
    alternative: str = "greater"  # treatment greater (or less) than control

    def text(self):
        sign = ">" if self.alternative == "greater" else "<"
        return f"{self.treatment.label} {sign} {self.control.label}"


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    source: str  # figure / table and section
    statement: str  # quoted from the paper unless marked as paraphrase
    paper_number: str  # the paper's numbers, or '' when it gives none
    comparisons: tuple
    dataset: str = None  # a key of DATASETS, None: the embedded glyphs
    note: str = ""  # how our cells differ from the paper's setting

    def cells(self):
        arms = [a for c in self.comparisons for a in (c.treatment, c.control)]
        return list(dict.fromkeys(a.cell for a in arms))


def _zap_pairs(metric, cell="frati2024/{}"):
    """Each zapped condition against its unzapped control."""
    return tuple(
        Comparison(
            Arm(f"{label}+zap", cell.format(f"{name}_zap"), metric),
            Arm(label, cell.format(name), metric),
        )
        for name, label in (
            ("iid", "i.i.d."),
            ("asb", "ASB"),
            ("meta_asb", "Meta-ASB"),
        )
    )


_FRATI = "frati2024/{}"
_HG = "hernandez2025/{}"
_LEE = f"lee2024/{cc.LEE_POINT}/{{}}"
_BER = "berariu2021/{}"
_BASE2 = f"{cc.BERARIU_POINT}/base"
_LOW_NET = "small network with LayerNorm, permuted"


def _vs(metric, treatment, controls, cell, alternative="greater"):
    """`treatment` (label, cell) against each of `controls`."""
    label, name = treatment
    return tuple(
        Comparison(
            Arm(label, cell.format(name), metric),
            Arm(c_label, cell.format(c_name), metric),
            alternative,
        )
        for c_label, c_name in controls
    )


CLAIMS = (
    Claim(
        "frati2024-zap-sequential",
        "frati2024",
        "Fig. 3, §3.1 (Omniglot)",
        '"Models trained with zapping produce significantly (p < 10^-8) '
        "better transfer accuracy than their counterparts without zapping "
        'in all cases" (sequential transfer, linear probing).',
        "Meta-ASB+zap 67% vs Meta-ASB 41.5-42.2% after 600 classes (§3.1, "
        "Fig. 2); i.i.d.+zap 56.4%; the best model without zapping 42.6%",
        _zap_pairs("sequential"),
        dataset="omniglot",
    ),
    Claim(
        "frati2024-meta-asb-zap-best",
        "frati2024",
        "Fig. 2-3, §3.1 (Omniglot)",
        '"the meta-learned models with zapping significantly outperform '
        "their non-zapping counterparts, and outperform i.i.d. "
        'pre-training by an additional margin"; "on Omniglot Meta-ASB+zap '
        'outperformed ASB+zap" (sequential transfer).',
        "Meta-ASB+zap 67%, i.i.d.+zap 56.4%, best unzapped 42.6%",
        _vs(
            "sequential",
            ("Meta-ASB+zap", "meta_asb_zap"),
            (
                ("ASB+zap", "asb_zap"),
                ("i.i.d.+zap", "iid_zap"),
                ("Meta-ASB", "meta_asb"),
                ("ASB", "asb"),
                ("i.i.d.", "iid"),
            ),
            _FRATI,
        ),
        dataset="omniglot",
    ),
    Claim(
        "frati2024-iid-zap-beats-meta",
        "frati2024",
        "§3.1 (Omniglot)",
        '"when applying zapping to i.i.d. pre-training, we can even achieve '
        "better performance (56.4%) than the models which are meta-learned "
        'but without zapping (~42%)".',
        "i.i.d.+zap 56.4% vs Meta-ASB ~42%",
        _vs(
            "sequential",
            ("i.i.d.+zap", "iid_zap"),
            (("Meta-ASB", "meta_asb"),),
            _FRATI,
        ),
        dataset="omniglot",
    ),
    Claim(
        "frati2024-zap-iid-transfer",
        "frati2024",
        "Fig. 5a, §3.2 (Omniglot)",
        '"zapping consistently provides advantages over non-zapped models '
        "for all pre-training configurations on standard i.i.d. transfer "
        'learning".',
        "",
        _zap_pairs("iid"),
        dataset="omniglot",
        note="frati2024 fine-tunes the whole model for five epochs in §3.2; "
        "these cells probe linearly for one epoch (gin/parts/transfer.gin).",
    ),
    Claim(
        "frati2025-zap-omni-image",
        "frati2025",
        "Fig. 1, Table 1, §3.1 (Omni-image)",
        '"Models pre-trained with zapping achieve significantly higher '
        "test accuracies, with models employing both meta-gradients and "
        'zapping coming out on top."',
        "transfer test: i.i.d. 16.3 ± 1.2 vs i.i.d.+zap 27.3 ± 0.8; ASB "
        "19.1 ± 0.9 vs 24.8 ± 0.9; Meta-ASB 18.0 ± 0.9 vs 30.5 ± 1.1 (%)",
        _zap_pairs("iid", "frati2024/omni_image/{}"),
        dataset="omni_image",
        note="Table 1 fine-tunes for five epochs; these cells probe "
        "linearly for one epoch.",
    ),
    Claim(
        "frati2025-zap-divergence-fc",
        "frati2025",
        "Fig. 2b, §3.2 (Omniglot)",
        '"After experiencing a perturbation meant to simulate a transfer '
        "shock, if a model was pretrained with zapping, its FC layer more "
        "easily re-aligns with its unperturbed control (Fig. 2b, dashed red "
        'is above solid red)."',
        "",
        _vs(
            "fc_realignment",
            ("i.i.d.+zap", "iid_zap"),
            (("i.i.d.", "iid"),),
            _FRATI,
        ),
        dataset="omniglot",
    ),
    Claim(
        "frati2025-zap-divergence-conv",
        "frati2025",
        "Fig. 2b, §3.2 (Omniglot)",
        '"If a model was pretrained with zapping, these lower layers are '
        "less affected by the last layer perturbation than if the model had "
        'not been subjected to zapping during pretraining."',
        "",
        _vs(
            "conv_similarity",
            ("i.i.d.+zap", "iid_zap"),
            (("i.i.d.", "iid"),),
            _FRATI,
        ),
        dataset="omniglot",
    ),
    Claim(
        "frati2025-adam-keeps-earlier-tasks",
        "frati2025",
        "Fig. 4, §3.3 (Omniglot, linear probing)",
        '"Both optimizers store gradient information but Adam leads to '
        "much longer lasting improvements of individual tasks and better "
        'final performance"; with Adam "loss continues decreasing for '
        'many steps even after training on that task has finished", '
        'which "is almost absent when training with SGD".',
        "",
        (
            Comparison(
                Arm("Adam", "frati2024/iid_zap", "early_task_loss"),
                Arm("SGD", "frati2025/iid_zap_sgd", "early_task_loss"),
                "less",
            ),
            Comparison(
                Arm("Adam", "frati2024/iid_zap", "sequential"),
                Arm("SGD", "frati2025/iid_zap_sgd", "sequential"),
            ),
        ),
        dataset="omniglot",
        note="i.i.d.+zap pretraining; each optimizer at its best rate of "
        "its own sweep (SGD momentum 0.9).",
    ),
    Claim(
        "hernandez2025-base-declines",
        "hernandez-garcia2025",
        "Fig. 1, §3; Fig. 2c, §4 (permuted, small network)",
        '"The base system (black) loses plasticity over time, resulting in '
        'a steady decrease in performance."',
        "",
        (
            Comparison(
                Arm(
                    "base, late tasks",
                    _HG.format("permuted/small-none/base"),
                    "late_online",
                ),
                Arm(
                    "base, best early task",
                    _HG.format("permuted/small-none/base"),
                    "peak_online",
                ),
                "less",
            ),
        ),
        note="Within the same runs: the last quarter of the tasks against "
        "the best task of the first half.",
    ),
    Claim(
        "hernandez2025-swr-small-network",
        "hernandez-garcia2025",
        "Fig. 2c, §4 (permuted, small network without LayerNorm)",
        '"In the small network, using both continual backpropagation and '
        "ReDo resulted in a drop in performance [...] selective weight "
        'reinitialization yielded stable performance".',
        "",
        _vs(
            "final_online",
            ("SWR", "swr"),
            (("CBP", "cbp"), ("ReDo", "redo"), ("base", "base")),
            _HG.format("permuted/small-none/{}"),
        ),
    ),
    Claim(
        "hernandez2025-swr-layernorm",
        "hernandez-garcia2025",
        "Fig. 2d, §4 (permuted, small network with LayerNorm)",
        '"Selective weight reinitialization maintained plasticity in all '
        "four settings and had the highest performance among all the "
        'systems when using layer normalization"; "better performance '
        'than shrink and perturb when using layer normalization".',
        "",
        _vs(
            "final_online",
            ("SWR", "swr"),
            (
                ("CBP", "cbp"),
                ("ReDo", "redo"),
                ("S&P", "shrink_perturb"),
                ("base", "base"),
            ),
            _HG.format("permuted/small-post/{}"),
        ),
    ),
    Claim(
        "hernandez2025-units-worse-with-layernorm",
        "hernandez-garcia2025",
        "Fig. 2c-d, §4 (permuted, small network)",
        '"reinitializing units is less effective at maintaining '
        'plasticity when the network employs layer norm"; in the small '
        'network "this effect was more severe when using layer norm".',
        "",
        tuple(
            Comparison(
                Arm(
                    f"{label}, LayerNorm",
                    _HG.format(f"permuted/small-post/{m}"),
                    "final_online",
                ),
                Arm(
                    f"{label}, no LayerNorm",
                    _HG.format(f"permuted/small-none/{m}"),
                    "final_online",
                ),
                "less",
            )
            for label, m in (("CBP", "cbp"), ("ReDo", "redo"))
        ),
    ),
    Claim(
        "hernandez2025-swr-class-incremental",
        "hernandez-garcia2025",
        "Fig. 3c, §5 (class-incremental, ViT with reparameterised LN)",
        '"selective weight reinitialization decreased the drop in '
        "performance relative to the network trained from scratch, and it "
        'did not suffer from any learning instabilities".',
        "",
        _vs(
            "final_test",
            ("SWR", "swr"),
            (("base", "base"),),
            _HG.format("class_incremental/large-reparam/{}"),
        ),
    ),
    Claim(
        "hernandez2025-reparam-layernorm",
        "hernandez-garcia2025",
        "Fig. 3b, §5 (class-incremental ViT)",
        '"Employing the reparameterized layer norm led to an improvement '
        'in performance for the vision transformer trained incrementally."',
        "gap to training from scratch on the last task: close to 10% with "
        "standard LayerNorm, 4% with the reparameterised one",
        (
            Comparison(
                Arm(
                    "reparam LN",
                    _HG.format("class_incremental/large-reparam/base"),
                    "final_test",
                ),
                Arm(
                    "standard LN",
                    _HG.format("class_incremental/large-standard/base"),
                    "final_test",
                ),
            ),
        ),
    ),
    Claim(
        "lee2024-warm-start-gap",
        "lee2024",
        "Fig. 2c, §3.2; Fig. 4 (10% subset, 50% label noise)",
        "Warm-starting on a noisy subset then training on all clean data "
        'generalises worse than a fresh network: "both reduced data size '
        'and increased label noise detrimentally affect generalization" '
        "(paraphrase and quote).",
        "",
        (
            Comparison(
                Arm("fresh", _LEE.format("base"), "fresh"),
                Arm("warm-started", _LEE.format("base"), "prediction"),
            ),
        ),
    ),
    Claim(
        "lee2024-trainability-insufficient",
        "lee2024",
        "Fig. 4, §3.4",
        'Trainability methods (Spectral, Regen, ReDo, CReLU): "While these '
        "methods accelerated the convergence of training loss, none of them "
        'enhanced generalization on unseen data."',
        "",
        (
            Comparison(
                Arm("fresh", _LEE.format("base"), "fresh"),
                Arm("ReDo", _LEE.format("redo"), "prediction"),
            ),
        ),
        note="Tested as: the gap to the fresh network persists under ReDo.",
    ),
    Claim(
        "lee2024-reinit-closes-most",
        "lee2024",
        "Fig. 4, §3.4; Fig. 5, §5.1",
        '"For all experiments, Shrink & Perturb significantly reduce '
        'plasticity loss and enhance generalization across all datasets"; '
        '"In comparison to other reinitialization strategies, Hare & '
        "Tortoise not only outperformed them but also surpassed the "
        'performance of fresh networks in CIFAR-10 with ResNet-18".',
        "",
        _vs(
            "prediction",
            ("S&P", "shrink_perturb"),
            (("base", "base"), ("ReDo", "redo")),
            _LEE,
        )
        + _vs(
            "prediction",
            ("H&T", "hare_tortoise"),
            (("base", "base"), ("ReDo", "redo"), ("head reset", "head_reset")),
            _LEE,
        ),
        note="§5.1 adds L2 and augmentation to every method; these cells "
        "do not.",
    ),
    Claim(
        "berariu2021-few-epochs-open-gap",
        "berariu2021",
        "Fig. 2, §2",
        '"just a few passes through the data are enough to observe a gap '
        '(5-10 for Adam, which is even before reaching 100% accuracy)".',
        "5-10 pretraining epochs (Adam)",
        (
            Comparison(
                Arm("fresh", _BER.format(_BASE2), "fresh"),
                Arm(
                    "warm-started, few epochs",
                    _BER.format("few_epochs"),
                    "final_test",
                ),
            ),
        ),
    ),
    Claim(
        "berariu2021-more-stages-worse",
        "berariu2021",
        "Fig. 4, §2",
        '"the final generalisation performance (the test accuracy achieved '
        "in the last stage training on the full training set) degrades with "
        'the number of splits".',
        "",
        (
            Comparison(
                Arm("2 stages", _BER.format(_BASE2), "final_test"),
                Arm(
                    "3 stages",
                    _BER.format("stages_3-uniform_1/base"),
                    "final_test",
                ),
            ),
        ),
    ),
    Claim(
        "berariu2021-gap-persists-wider-deeper",
        "berariu2021",
        "Fig. 5, §2",
        '"even for very deep and wide models there is a significant gap '
        "between pretrained models and those trained from random "
        'initialisations".',
        "",
        tuple(
            Comparison(
                Arm(f"fresh, {v}", _BER.format(v), "fresh"),
                Arm(f"warm-started, {v}", _BER.format(v), "final_test"),
            )
            for v in ("wider", "deeper")
        ),
    ),
    Claim(
        "berariu2021-reset-top-recovers-part",
        "berariu2021",
        "Fig. 6, §2",
        '"resetting just a small subset of the layers is not enough to '
        "fully recover the gap [...] in order to close the gap the top part "
        'of the model must be reinitialised".',
        "",
        (
            Comparison(
                Arm("top reset", _BER.format("reset_top"), "final_test"),
                Arm("warm-started", _BER.format(_BASE2), "final_test"),
            ),
            Comparison(
                Arm("fresh", _BER.format(_BASE2), "fresh"),
                Arm("top reset", _BER.format("reset_top"), "final_test"),
            ),
        ),
        note="Resets the last ResNet stage and the classifier (their "
        "modules 5-6) after pretraining.",
    ),
)
