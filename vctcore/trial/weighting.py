"""The paper's importance-weighted baseline (section 4.3.2, eqs. 4-6).

A random forest learns p(OOD | a) from the conditioning attributes ``a`` of the ID (label 0) and OOD
(label 1) test sets; ID test errors are then weighted by ``w = p / (1 - p) * p(ID) / p(OOD)`` (eq. 6) and
averaged (eq. 4: ``stats.mae_ci(abs_error, weights=w)``). The paper takes p(OOD | a) as the fraction of
trees voting OOD; scikit-learn's ``predict_proba`` averages the trees' leaf class shares instead, which
gives different numbers, so ``tree_vote_fraction`` counts the votes over ``forest.estimators_``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from vctcore.attributes import CONDITIONING_ATTRIBUTES
from vctcore.trial.attribution import feature_matrix

#: the attributes a target population is described by (sex, age, height, weight)
OOD_COLUMNS: tuple[str, ...] = CONDITIONING_ATTRIBUTES
OOD_LABEL = 1
#: default clip of p(OOD | a): half a vote of a 100-tree forest, 1 / (2 * 100)
DEFAULT_CLIP = 1.0 / (2 * 100)

EMPTY_SET = "{name}: no rows; the classifier needs ID and OOD examples"
BAD_PROBABILITY = "p_ood: values must be finite and in [0, 1]; {count} are not"
BAD_PRIOR = "{name}: must be a finite positive proportion, got {value!r}"
BAD_CLIP = "clip: must lie in (0, 0.5), got {value!r}"


def tree_vote_fraction(forest: RandomForestClassifier, X: np.ndarray, label: int = OOD_LABEL) -> np.ndarray:
    """Fraction of the forest's trees whose prediction for each row of ``X`` (n, k) is ``label``, shape (n,)."""
    class_index = float(np.flatnonzero(forest.classes_ == label)[0])
    votes = np.stack([tree.predict(X) == class_index for tree in forest.estimators_])
    return votes.mean(axis=0)


@dataclass(frozen=True)
class OODClassifier:
    """A fitted ID-vs-OOD forest with its accuracies.

    ``accuracy_train``: majority of tree votes (vote fraction > 0.5) against the labels of the rows it was
    trained on (optimistic). ``accuracy_oob``: scikit-learn's out-of-bag score (each row judged by the
    trees that did not see it, by averaged leaf shares). The paper reports 0.83 (BFP) and 0.90 (MMP)
    without saying which kind.
    """

    forest: RandomForestClassifier
    columns: tuple[str, ...]
    accuracy_train: float
    accuracy_oob: float
    n_id: int
    n_ood: int

    def p_ood(self, query: pd.DataFrame) -> np.ndarray:
        """p(OOD | a) of each row of ``query`` (n,): the fraction of trees voting OOD."""
        x, _ = feature_matrix(query, self.columns)
        return tree_vote_fraction(self.forest, x)


def fit_ood_classifier(attrs_id: pd.DataFrame, attrs_ood: pd.DataFrame, *, columns: Sequence[str] = OOD_COLUMNS,
                       n_trees: int = 100, min_leaf: int = 10, seed: int = 0) -> OODClassifier:
    """The paper's classifier: ``RandomForestClassifier(n_trees, min_samples_leaf=min_leaf)`` on ID (0) + OOD (1).

    ``columns`` of both tables (sex "F"/"M" coded 0/1) must be complete (``attribution.feature_matrix``).
    """
    for name, table in (("attrs_id", attrs_id), ("attrs_ood", attrs_ood)):
        if len(table) == 0:
            raise ValueError(EMPTY_SET.format(name=name))
    x_id, _ = feature_matrix(attrs_id, columns)
    x_ood, _ = feature_matrix(attrs_ood, columns)
    x = np.vstack([x_id, x_ood])
    y = np.r_[np.zeros(len(x_id), dtype=int), np.ones(len(x_ood), dtype=int)]
    forest = RandomForestClassifier(n_estimators=n_trees, min_samples_leaf=min_leaf, oob_score=True,
                                    random_state=seed, n_jobs=1).fit(x, y)
    accuracy_train = float(((tree_vote_fraction(forest, x) > 0.5).astype(int) == y).mean())
    return OODClassifier(forest, tuple(columns), accuracy_train, float(forest.oob_score_), len(x_id), len(x_ood))


def ood_probability(attrs_id: pd.DataFrame, attrs_ood: pd.DataFrame, query: pd.DataFrame, *,
                    columns: Sequence[str] = OOD_COLUMNS, n_trees: int = 100, min_leaf: int = 10,
                    seed: int = 0) -> np.ndarray:
    """p(OOD | a) for each row of ``query`` (n,) from a classifier fitted on ID + OOD (``fit_ood_classifier``,
    which also gives its accuracy)."""
    model = fit_ood_classifier(attrs_id, attrs_ood, columns=columns, n_trees=n_trees, min_leaf=min_leaf, seed=seed)
    return model.p_ood(query)


def importance_weights(p_ood: object, p_id_prior: float, p_ood_prior: float, *,
                       clip: float = DEFAULT_CLIP) -> np.ndarray:
    """Importance weights (n,) of paper eq. 6: ``w = p / (1 - p) * p(ID) / p(OOD)``.

    ``p`` is p(OOD | a) clipped to ``[clip, 1 - clip]`` so that a unanimous forest gives a finite, non-zero
    weight; the default is half a vote of a 100-tree forest (use ``1 / (2 * n_trees)`` for other sizes).
    ``p_id_prior``/``p_ood_prior`` are the shares of the original image set assigned to each population
    (only their ratio matters).
    """
    if not 0.0 < clip < 0.5:
        raise ValueError(BAD_CLIP.format(value=clip))
    for name, value in (("p_id_prior", p_id_prior), ("p_ood_prior", p_ood_prior)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(BAD_PRIOR.format(name=name, value=value))
    p = np.asarray(p_ood, dtype=float)
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        raise ValueError(BAD_PROBABILITY.format(count=int(bad.sum())))
    p = np.clip(p, clip, 1.0 - clip)
    return p / (1.0 - p) * (p_id_prior / p_ood_prior)


def effective_sample_size(weights: object) -> float:
    """Kish's effective sample size of importance weights (n,): ``(sum w)^2 / sum w^2``, between 1 (one
    weight carries everything) and n (equal weights). A weighted MAE rests on about this many patients."""
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or w.size == 0 or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights: need a non-empty 1-D array of finite, non-negative values with a positive sum")
    return float(w.sum() ** 2 / (w ** 2).sum())
