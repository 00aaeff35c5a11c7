"""Linear evaluation: how well one linear layer separates action from background snippets.

Two protocols on the same snippets (features L2-normalised per snippet, labels from annotations):

- the reference protocol (SoLa's linear evaluation): `Linear(C -> 2)`, SGD lr 0.01, momentum 0.9,
  batch 256, 16 epochs on the training split; every metric is measured on the validation split
  after each epoch and averaged over epochs 6-15 (0-based: the last ten);
- a probe that converges: class-balanced logistic regression with a little L2, fitted full-batch
  with L-BFGS. The reference protocol underfits small sets (it can predict the majority class
  only), which hides differences between feature sets; this one does not.

Metrics: accuracy, balanced accuracy, average precision of the action class and boundary accuracy
(accuracy on the snippets within +-k of an action/background transition, k=2 by default).
Snippets whose centre lies only in an "Ambiguous" segment are left out. Deterministic on the CPU
for a given seed; the same seed gives the baseline and the adapted features the same
initialisation and the same batches.

`collect_snippets` trains on one subset and measures on another (the `sola probe` report);
`collect_heldout_snippets` splits the videos of ONE subset into a probe-training part and a
held-out part (checkpoint selection, which must never look at the evaluation subset).

Bounded memory: a split is first planned (which snippets of which videos, from the stores' shapes
and the annotations), then read and adapted one video at a time into one matrix of the chosen
snippets. `data.videos` (a share of each split's videos) and `data.chunk` (one random snippet per
chunk of that many, as the reference's one per 100) subsample on request; `data.max_snippets` and
`data.max_bytes` (of each split's float32 matrix: 750 MB, so about 1.5 GB for both whatever the
dimension) cap each split (a seeded uniform draw beyond it, `snippet_cap`). The defaults keep every
snippet of sets up to that cap. Every subsample is seeded and reported.

Every default lives once in `ProbeConfig` (`sola.evaluate.probe_config`, re-exported here; sections `data`,
`sgd`, `lbfgs`, `select`); the functions take `config: ProbeConfig | None` (None: the defaults)
and an explicit `seed` that, when given, replaces `data.seed`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from sola.data.annotations import Annotations, canonical_subset, grid_for, match_ids, snippet_labels
from sola.core.devices import resolve_device
from sola.core.errors import AnnotationError, ConfigError, StoreError
from sola.evaluate.probe_config import (CRITERIA, METRICS, SELECTABLE, LbfgsProbeConfig, ProbeConfig,  # noqa: F401
                               ProbeDataConfig, ProbeSelectConfig, SgdProbeConfig, probe_config,
                               validate_probe_config)
from sola.adapt.transform import apply_adapter


@dataclass
class SnippetSet:
    """The snippets of one split that a probe sees: per video, the chosen rows and their targets.

    A plan only: `build_matrix` reads (and adapts) the features one video at a time.
    """

    store: object  # the FeatureStore the rows are read from
    video_ids: list[str]  # annotation ids
    feature_ids: list[str]  # the store's ids of the same videos
    rows: list[np.ndarray]  # each (n_v,) int64, increasing: the chosen snippets of the video
    action: list[np.ndarray]  # each (n_v,) bool
    boundary: list[np.ndarray]  # each (n_v,) bool: within +-k of a transition
    available: int = 0  # usable snippets (not ambiguous-only) of the split's videos before subsampling
    videos_available: int = 0  # videos of the split before `data.videos`
    cap: int = 0  # the most snippets the split may hold (`snippet_cap`; 0: no cap)

    @property
    def num_snippets(self) -> int:
        """Snippets chosen over all videos."""
        return int(sum(len(r) for r in self.rows))


@dataclass
class ProbeData:
    """The probe's inputs: `train`/`val` SnippetSets and where they came from."""

    train: SnippetSet
    val: SnippetSet
    train_subset: str
    val_subset: str
    boundary_k: int
    skipped: list[str] = field(default_factory=list)  # annotated videos without features
    holdout: float | None = None  # set when train/val are two parts of one subset (`collect_heldout_snippets`)


def boundary_mask(action: np.ndarray, k: int = 2) -> np.ndarray:
    """Snippets (T,) within +-k of an action/background transition.

    A transition between snippets i-1 and i marks the k snippets on each side: i-k .. i+k-1.
    Video ends are not transitions. `k` >= 1.
    """
    action = np.asarray(action, dtype=bool)
    length = len(action)
    change = np.flatnonzero(action[1:] != action[:-1]) + 1  # first snippet after each transition
    near = np.zeros(length + 1, dtype=np.int64)
    np.add.at(near, np.clip(change - k, 0, length), 1)
    np.add.at(near, np.clip(change + k, 0, length), -1)
    return np.cumsum(near[:length]) > 0


def choose_splits(annotations: Annotations, video_ids, train: str | None, val: str | None) -> tuple[str, str]:
    """Training and validation subset names: the given ones, else training/validation, else validation/test.

    THUMOS14 has no training videos with temporal annotations, so its probe trains on validation and
    measures on test. Raises `AnnotationError` when neither pair is present among `video_ids`.
    """
    present = {canonical_subset(annotations[v].subset) for v in video_ids}
    if not present:
        raise AnnotationError(
            f"{getattr(annotations, 'source', 'annotations')}: no annotated video has features (no video id "
            "matches a feature file); compare the ids with `sola inspect FEATURES --annotations ANN`"
        )
    if train and val:
        return canonical_subset(train), canonical_subset(val)
    for pair in (("training", "validation"), ("validation", "test")):
        if set(pair) <= present:
            return (canonical_subset(train) if train else pair[0]), (canonical_subset(val) if val else pair[1])
    raise AnnotationError(
        f"cannot tell the probe's training and validation subsets from {sorted(present)}; "
        "name them with --train-subset and --val-subset"
    )


def collect_snippets(
    store,
    annotations: Annotations,
    train_subset: str | None = None,
    val_subset: str | None = None,
    config: ProbeConfig | None = None,
    progress: bool = False,
) -> ProbeData:
    """Plan the probe's snippets of every annotated video of both splits of `store` (their shapes and
    targets; `build_matrix` reads the features).

    Snippet times follow `grid_for` (a fixed stride when the annotations or `config.data` give one,
    else T snippets over the duration); `data.boundary_k` marks the boundary snippets. Raises
    `AnnotationError` if a split has no video with features, `ConfigError` for a bad config.
    """
    config = probe_config(config)
    matched = match_ids(store.video_ids(), annotations.keys())
    by_annotation = {a: f for f, a in matched.pairs.items()}
    train_name, val_name = choose_splits(annotations, list(by_annotation), train_subset, val_subset)
    sets = {}
    for name in (train_name, val_name):
        chosen = sorted(v for v in by_annotation if canonical_subset(annotations[v].subset) == name)
        if not chosen:
            raise AnnotationError(
                f"no video of subset {name!r} has features ({matched.summary()}); check the store and --*-subset"
            )
        sets[name] = read_snippets(store, annotations, chosen, by_annotation, config, progress,
                                   f"planning {name}", stream=len(sets))
    return ProbeData(sets[train_name], sets[val_name], train_name, val_name, config.data.boundary_k,
                     skipped=matched.annotations_without_features)


def read_snippets(
    store,
    annotations: Annotations,
    video_ids: list[str],
    feature_ids: dict[str, str],
    config: ProbeConfig | None = None,
    progress: bool = False,
    desc: str = "reading",
    stream: int = 0,
) -> SnippetSet:
    """The SnippetSet of `video_ids` (annotation ids, in this order); `feature_ids` maps them to store ids.

    Reads only each video's shape. The grid, `boundary_k` and the subsample (`videos`, `chunk`, and
    the cap of `snippet_cap`, drawn with `data.seed` and `stream`) come from `config.data` (None: the defaults).
    """
    data = (config if config is not None else ProbeConfig()).data
    rng = np.random.default_rng([data.seed, stream])
    chosen = list(video_ids)
    if data.videos < 1:
        count = max(1, int(data.videos * len(chosen) + 0.5))
        chosen = [chosen[i] for i in sorted(rng.choice(len(chosen), count, replace=False))]
    snippet_set = SnippetSet(store, [], [], [], [], [], videos_available=len(video_ids))
    width = 1
    for video_id in tqdm(chosen, desc=desc, disable=None if progress else True, leave=False):
        shape = store.shape(feature_ids[video_id])
        length, width = int(shape[0]), max(width, int(shape[1]))
        video = annotations[video_id]
        labels = snippet_labels(video, length, grid_for(video, length, data.feat_stride, data.num_frames, data.fps))
        keep = labels.action | ~labels.ambiguous
        snippet_set.available += int(keep.sum())
        rows = draw_per_chunk(np.flatnonzero(keep), data.chunk, rng)
        snippet_set.video_ids.append(video_id)
        snippet_set.feature_ids.append(feature_ids[video_id])
        snippet_set.rows.append(rows)
        snippet_set.action.append(labels.action[rows])
        snippet_set.boundary.append(boundary_mask(labels.action, data.boundary_k)[rows])
    snippet_set.cap = snippet_cap(data, width)
    if snippet_set.cap and snippet_set.num_snippets > snippet_set.cap:
        cap_snippets(snippet_set, snippet_set.cap, rng)
    return snippet_set


def snippet_cap(data: ProbeDataConfig, dim: int) -> int:
    """The most snippets one split may hold: `data.max_snippets`, and as many rows of `dim` float32
    as `data.max_bytes` holds (at least 1); 0 when both are 0 (no cap).

    The byte bound keeps both matrices at about 2 x 750 MB by default whatever the dimension
    (91,552 snippets at 2048-d, 400,000 up to 468-d).
    """
    caps = [data.max_snippets] if data.max_snippets else []
    if data.max_bytes:
        caps.append(max(1, data.max_bytes // (4 * dim)))
    return min(caps, default=0)


def draw_per_chunk(rows: np.ndarray, chunk: int, rng: np.random.Generator) -> np.ndarray:
    """One random entry of `rows` (increasing snippet indices) per chunk of `chunk` snippets
    (`rows // chunk`); `rows` itself for `chunk` 1."""
    if chunk == 1 or len(rows) == 0:
        return rows
    group = rows // chunk
    order = np.lexsort((rng.random(len(rows)), group))  # by chunk, randomly within it
    first = np.r_[True, group[order][1:] != group[order][:-1]]
    return np.sort(rows[order[first]])


def cap_snippets(snippet_set: SnippetSet, cap: int, rng: np.random.Generator) -> None:
    """Keep a uniform random `cap` of the chosen snippets over all videos, in place (order kept)."""
    sizes = np.array([len(r) for r in snippet_set.rows])
    keep = np.zeros(sizes.sum(), dtype=bool)
    keep[rng.choice(len(keep), cap, replace=False)] = True
    parts = np.split(keep, np.cumsum(sizes)[:-1])
    for name in ("rows", "action", "boundary"):
        values = getattr(snippet_set, name)
        setattr(snippet_set, name, [v[mask] for v, mask in zip(values, parts)])


def on_store(snippet_set: SnippetSet, store, annotations: Annotations) -> SnippetSet:
    """The same plan read from another store of the same videos (e.g. one `sola transform` wrote).

    Raises `AnnotationError` when a video is missing there or has another length.
    """
    matched = match_ids(store.video_ids(), annotations.keys())
    by_annotation = {a: f for f, a in matched.pairs.items()}
    for video_id, feature_id in zip(snippet_set.video_ids, snippet_set.feature_ids):
        other = by_annotation.get(video_id)
        if other is None or store.shape(other)[0] != snippet_set.store.shape(feature_id)[0]:
            raise AnnotationError(
                f"{store.path} does not hold the same annotated videos as {snippet_set.store.path} "
                f"({video_id!r} {'is missing' if other is None else 'has another length'}); "
                "transform the whole store with `sola transform`"
            )
    feature_ids = [by_annotation[v] for v in snippet_set.video_ids]
    return dataclasses.replace(snippet_set, store=store, feature_ids=feature_ids)


def split_videos(
    video_ids, holdout: float = ProbeDataConfig.holdout, seed: int = ProbeDataConfig.seed
) -> tuple[list[str], list[str]]:
    """`(probe-train, held-out)` video ids: a seeded permutation of the sorted ids; both parts sorted.

    The held-out part has `round(holdout * n)` videos, at least 1 and at most n - 1; the same ids
    (in any order) and seed give the same split. Raises `AnnotationError` for fewer than 2 videos
    and `ConfigError` for a `holdout` outside (0, 1).
    """
    ids = sorted(set(video_ids))
    if not 0 < holdout < 1:
        raise ConfigError(f"the held-out share must lie strictly between 0 and 1, got {holdout}")
    if len(ids) < 2:
        raise AnnotationError(
            f"a held-out split needs at least 2 videos with features, got {len(ids)}: {ids}"
        )
    count = min(max(int(holdout * len(ids) + 0.5), 1), len(ids) - 1)
    order = np.random.default_rng(seed).permutation(len(ids))
    held = sorted(ids[i] for i in order[:count])
    rest = sorted(ids[i] for i in order[count:])
    return rest, held


def selection_subset(annotations: Annotations, video_ids) -> str:
    """The subset a TAL head trains on among `video_ids`: training, else validation (THUMOS14).

    The same first choice as `choose_splits`. Raises `AnnotationError` when neither is present.
    """
    present = {canonical_subset(annotations[v].subset) for v in video_ids}
    for name in ("training", "validation"):
        if name in present:
            return name
    raise AnnotationError(
        f"no training or validation videos with features (subsets {sorted(present)}); name the subset to "
        "select on with --subset (the one the TAL head trains on, never the evaluation subset)"
    )


def collect_heldout_snippets(
    store,
    annotations: Annotations,
    subset: str | None = None,
    config: ProbeConfig | None = None,
    seed: int | None = None,
    progress: bool = False,
    heldout_subset: str | None = None,
) -> ProbeData:
    """Snippets of ONE subset, its videos split by `split_videos(data.holdout, seed)`: the probe trains
    on the rest and is measured on the held-out videos.

    `subset` defaults to `selection_subset` (training, else validation). Videos of other subsets are
    never read. `train_subset` and `val_subset` of the result both name `subset`; `holdout` is set.
    With `heldout_subset` (e.g. `sola splice`'s "holdout", whose clips the training videos never
    use), the probe trains on every video of `subset` and is measured on that subset instead.
    `config.data` gives the grid, `boundary_k`, `holdout` and the seed (`seed`, when given, replaces
    it). Raises `AnnotationError` when the subset has fewer than 2 videos with features.
    """
    config = probe_config(config, seed)
    matched = match_ids(store.video_ids(), annotations.keys())
    by_annotation = {a: f for f, a in matched.pairs.items()}
    name = canonical_subset(subset) if subset else selection_subset(annotations, list(by_annotation))
    chosen = [v for v in by_annotation if canonical_subset(annotations[v].subset) == name]
    if len(chosen) < 2:
        present = sorted({canonical_subset(annotations[v].subset) for v in by_annotation})
        raise AnnotationError(
            f"subset {name!r} has {len(chosen)} video(s) with features ({matched.summary()}; subsets with "
            f"features: {present}); a held-out split needs at least 2"
        )
    held_name = name
    if heldout_subset:
        held_name = canonical_subset(heldout_subset)
        held_ids = sorted(v for v in by_annotation if canonical_subset(annotations[v].subset) == held_name)
        if held_name == name or not held_ids:
            raise AnnotationError(
                f"held-out subset {heldout_subset!r} must be another subset than {name!r} with videos that have "
                f"features ({len(held_ids)} found)"
            )
        train_ids, holdout = sorted(chosen), None
    else:
        holdout = config.data.holdout
        train_ids, held_ids = split_videos(chosen, holdout, config.data.seed)
    train = read_snippets(store, annotations, train_ids, by_annotation, config, progress,
                          desc=f"planning {name} (probe-train)", stream=0)
    held = read_snippets(store, annotations, held_ids, by_annotation, config, progress,
                         desc=f"planning {held_name} (held out)", stream=1)
    skipped = [v for v in matched.annotations_without_features
               if canonical_subset(annotations[v].subset) in (name, held_name)]
    return ProbeData(train, held, name, held_name, config.data.boundary_k, skipped=skipped, holdout=holdout)


def build_matrix(snippets: SnippetSet, adapter=None, device: str | torch.device = "cpu",
                 progress: bool = False) -> tuple[torch.Tensor, ...]:
    """The chosen snippets as one L2-normalised matrix: (x (N, C) float32, action (N,), boundary (N,)).

    Videos are read one at a time; with an adapter each whole video is adapted first
    (`sola.adapt.transform.apply_adapter`), so memory holds the matrix and one video. Raises `StoreError`
    for NaN/Inf features.
    """
    store = snippets.store
    x = torch.empty(snippets.num_snippets, store.dim(), dtype=torch.float32)
    offset = 0
    for feature_id, rows in tqdm(list(zip(snippets.feature_ids, snippets.rows)), desc="reading snippets",
                                 disable=None if progress else True, leave=False):
        features = np.asarray(store.read(feature_id), dtype=np.float32)
        if not np.isfinite(features).all():
            raise StoreError(
                f"{store.source_of(feature_id)}: NaN/Inf features; a probe cannot learn from them: fix "
                "them (`sola inspect` counts them) or drop the video"
            )
        if adapter is not None:
            features = apply_adapter(adapter, features, device=device)
        chosen = torch.from_numpy(np.ascontiguousarray(features[rows], dtype=np.float32))
        x[offset : offset + len(rows)] = torch.nn.functional.normalize(chosen, dim=1)
        offset += len(rows)
    action = torch.from_numpy(np.concatenate(snippets.action)) if snippets.rows else torch.zeros(0, dtype=torch.bool)
    boundary = torch.from_numpy(np.concatenate(snippets.boundary)) if snippets.rows else torch.zeros(0, dtype=torch.bool)
    return x, action, boundary


def binary_metrics(scores: torch.Tensor, action: torch.Tensor, boundary: torch.Tensor) -> dict[str, float]:
    """Accuracy, balanced accuracy, AP of the action class and boundary accuracy of scores (N,).

    A snippet is predicted as action where its score is > 0. Balanced accuracy averages the recall of
    the classes present; AP is non-interpolated (mean precision at each action snippet, tied
    scores counted together); boundary accuracy is NaN when no snippet is near a boundary.
    """
    scores = scores.detach().double().cpu()
    action = action.bool().cpu()
    boundary = boundary.bool().cpu()
    correct = (scores > 0) == action
    recalls = [correct[action == c].double().mean().item() for c in (False, True) if (action == c).any()]
    return {
        "accuracy": correct.double().mean().item(),
        "balanced_accuracy": float(np.mean(recalls)),
        "average_precision": average_precision(scores.numpy(), action.numpy()),
        "boundary_accuracy": correct[boundary].double().mean().item() if boundary.any() else math.nan,
    }


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Non-interpolated AP of `scores` (N,) for `positive` (N,) bool: sum of precision x recall steps.

    Equal scores form one threshold. NaN when there is no positive.
    """
    positive = np.asarray(positive, dtype=bool)
    total = positive.sum()
    if total == 0:
        return math.nan
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]  # the end of each run of equal scores
    tp = np.cumsum(positive)[last_of_tie]
    seen = np.flatnonzero(last_of_tie) + 1
    precision = tp / seen
    recall_step = np.diff(np.r_[0, tp]) / total
    return float(np.sum(precision * recall_step))


def reference_probe(
    train: tuple[torch.Tensor, ...],
    val: tuple[torch.Tensor, ...],
    seed: int | None = None,
    config: ProbeConfig | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """The reference protocol (`config.sgd`): Linear(C->2) trained with SGD; metrics averaged over
    epochs >= `sgd.report_from` (the last epoch alone when there are no more).

    `train`/`val` are `build_matrix` outputs. Returns `{metric: mean over the reported epochs}` plus
    `per_epoch_accuracy` (list). Initialisation and batch order come from the seed only (`seed`,
    else `data.seed`).
    """
    config = probe_config(config, seed)
    sgd, seed = config.sgd, config.data.seed
    device = torch.device(device)
    x, y, _ = (t.to(device) for t in train)
    val_x, val_y, val_boundary = (t.to(device) for t in val)
    generator = torch.Generator().manual_seed(seed)
    dim = x.shape[1]
    bound = 1.0 / math.sqrt(dim)  # nn.Linear's default init, drawn from our own generator
    weight = ((torch.rand(2, dim, generator=generator) * 2 - 1) * bound).to(device)  # (2, C)
    bias = ((torch.rand(2, generator=generator) * 2 - 1) * bound).to(device)  # (2,)
    history, momentum_state = [], {}
    with _few_threads(device), torch.no_grad():
        for _ in range(sgd.epochs):
            order = torch.randperm(len(x), generator=generator).to(device)
            sgd_epoch(x, y.long(), weight, bias, sgd.lr, sgd.momentum, sgd.batch_size, momentum_state, order)
            logits = val_x @ weight.T + bias  # (N, 2)
            # argmax picks class 0 on a tie, as "score > 0" does
            history.append(binary_metrics(logits[:, 1] - logits[:, 0], val_y, val_boundary))
    reported = history[sgd.report_from:] or history[-1:]
    result = {name: float(np.mean([h[name] for h in reported])) for name in METRICS}
    result["per_epoch_accuracy"] = [h["accuracy"] for h in history]
    return result


def sgd_epoch(
    x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
    lr: float, momentum: float, batch_size: int, state: dict, order: torch.Tensor | None = None,
) -> None:
    """One epoch of mini-batch SGD with momentum on softmax cross-entropy, in place, without autograd.

    `x` (N, C) and `target` (N,) class indices, taken in `order` (N,) (None: as they are; batches are
    gathered one at a time, never a shuffled copy of `x`), `weight` (K, C), `bias` (K,). The
    same updates as `torch.optim.SGD(lr, momentum)` on `cross_entropy(x @ weight.T + bias)` (mean
    over the batch), written out because autograd and optimizer bookkeeping cost more than the
    arithmetic of a (256, C) x (C, 2) step. `state` (start with {}) keeps the momentum buffers.
    """
    eye = torch.eye(weight.shape[0], dtype=x.dtype, device=x.device)
    for first in range(0, len(x), batch_size):
        index = slice(first, first + batch_size) if order is None else order[first : first + batch_size]
        batch = x[index]  # (B, C)
        probs = torch.softmax(batch @ weight.T + bias, dim=1)  # (B, K)
        error = (probs - eye[target[index]]) / len(batch)  # d loss / d logits
        for name, param, grad in (("weight", weight, error.T @ batch), ("bias", bias, error.sum(0))):
            buffer = state.get(name)
            buffer = grad.clone() if buffer is None else buffer.mul_(momentum).add_(grad)
            state[name] = buffer
            param.sub_(lr * buffer)


@contextlib.contextmanager
def _few_threads(device: torch.device):
    """One CPU thread for the many tiny SGD steps: thread hand-offs cost more than the maths
    (tens of times more on a busy machine). Restores the previous setting."""
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def logistic_probe(
    train: tuple[torch.Tensor, ...],
    val: tuple[torch.Tensor, ...],
    config: ProbeConfig | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Class-balanced logistic regression fitted to convergence with L-BFGS (full batch, from zero).

    Loss: class-balanced mean binary cross-entropy + l2/2 * |w|^2 (bias free); `l2`, `max_iter` and
    the stopping tolerances from `config.lbfgs`. Returns the metrics on `val` plus `iterations`
    (L-BFGS iterations used).
    """
    lbfgs = probe_config(config).lbfgs
    device = torch.device(device)
    x, y, _ = (t.to(device) for t in train)
    val_x, val_y, val_boundary = (t.to(device) for t in val)
    target = y.float()
    positives = target.sum()
    negatives = len(target) - positives
    # Each class carries half of the loss, whatever its share of the snippets.
    sample_weight = torch.where(
        y, len(target) / (2 * positives.clamp(min=1)), len(target) / (2 * negatives.clamp(min=1))
    )
    weight = torch.zeros(x.shape[1], device=device, requires_grad=True)
    bias = torch.zeros((), device=device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=lbfgs.max_iter, history_size=lbfgs.history_size,
        line_search_fn="strong_wolfe", tolerance_grad=lbfgs.tolerance_grad, tolerance_change=lbfgs.tolerance_change,
    )

    def closure():
        optimizer.zero_grad(set_to_none=True)
        scores = x @ weight + bias
        loss = torch.nn.functional.binary_cross_entropy_with_logits(scores, target, weight=sample_weight)
        loss = loss + 0.5 * lbfgs.l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    iterations = int(optimizer.state[weight].get("n_iter", 0))
    with torch.no_grad():
        result = binary_metrics(val_x @ weight + bias, val_y, val_boundary)
    result["iterations"] = iterations
    return result


def probe_features(data: ProbeData, adapter=None, seed: int | None = None, device: str | torch.device | None = None,
                   config: ProbeConfig | None = None, progress: bool = False) -> dict:
    """Both protocols on one feature set (identity, or `adapter` applied): a flat dict of columns.

    Columns: `sgd_<metric>` (reference protocol), `lbfgs_<metric>` (converging probe), snippet counts.
    Settings from `config` (`seed`, when given, replaces `data.seed`); `device` None: auto.
    """
    config = probe_config(config, seed)
    device = resolve_device(device)
    train = build_matrix(data.train, adapter, device, progress)
    val = build_matrix(data.val, adapter, device, progress)
    reference = reference_probe(train, val, config=config, device=device)
    logistic = logistic_probe(train, val, config=config, device=device)
    row = {f"sgd_{name}": reference[name] for name in METRICS}
    row.update({f"lbfgs_{name}": logistic[name] for name in METRICS})
    row["lbfgs_iterations"] = logistic["iterations"]
    row["train_snippets"] = int(len(train[0]))
    row["val_snippets"] = int(len(val[0]))
    row["train_available"] = data.train.available  # before subsampling
    row["val_available"] = data.val.available
    row["val_action_fraction"] = float(val[1].double().mean())
    return row


def compare_probe(
    store,
    annotations: Annotations,
    adapter=None,
    seed: int | None = None,
    progress: bool = False,
    device=None,
    adapted_store=None,
    config: ProbeConfig | None = None,
    train_subset: str | None = None,
    val_subset: str | None = None,
) -> dict:
    """Probe table for the demo and the CLI: `{"rows": {"baseline": {...}, "SoLa": {...}}, ...}`.

    `store`: a FeatureStore; `adapter`: a `SoLaAdapter` applied to `store` for the SoLa row, or
    `adapted_store`: a store already transformed by SoLa (same videos; no adapter work then).
    With neither, only the baseline row. `train_subset`/`val_subset` as in `collect_snippets`;
    settings from `config` (None: the defaults; `seed`, when given, replaces `data.seed`), recorded
    in the table's `config`. Format with `format_probe_table`. Raises `AnnotationError` when a split
    has no videos, `ConfigError` for a bad config.
    """
    config = probe_config(config, seed)
    seed = config.data.seed
    data = collect_snippets(store, annotations, train_subset, val_subset, config, progress)
    rows = {"baseline": probe_features(data, None, device=device, config=config, progress=progress)}
    if adapted_store is not None:
        adapted = dataclasses.replace(data, train=on_store(data.train, adapted_store, annotations),
                                      val=on_store(data.val, adapted_store, annotations))
        rows["SoLa"] = probe_features(adapted, None, device=device, config=config, progress=progress)
    elif adapter is not None:
        rows["SoLa"] = probe_features(data, adapter, device=device, config=config, progress=progress)
    return {
        "train_subset": data.train_subset,
        "val_subset": data.val_subset,
        "train_videos": len(data.train.video_ids),
        "val_videos": len(data.val.video_ids),
        "subsample": subsample_summary(data),
        "boundary_k": data.boundary_k,
        "seed": seed,
        "config": config.to_dict(),
        "rows": rows,
    }


def subsample_summary(data: ProbeData) -> dict:
    """What the probe saw of each split: videos and snippets chosen of those available."""
    return {name: {"videos": len(part.video_ids), "videos_available": part.videos_available,
                   "snippets": part.num_snippets, "snippets_available": part.available, "cap": part.cap}
            for name, part in (("train", data.train), ("val", data.val))}


def format_probe_table(table: dict) -> str:
    """A fixed-width text table of `compare_probe` output (percentages)."""
    columns = [(f"{p}_{m}", f"{p} {short}") for p in ("sgd", "lbfgs")
               for m, short in zip(METRICS, ("acc", "bal.acc", "AP", f"bnd±{table['boundary_k']}"))]
    name_width = max(len(name) for name in table["rows"]) + 2
    header = " " * name_width + "".join(f"{title:>14}" for _, title in columns)
    if table.get("holdout"):
        where = (f"train on {table['train_videos']} videos of {table['train_subset']}, measure on the other "
                 f"{table['val_videos']} (held out: {table['holdout']:g}, seed {table.get('seed', 0)})")
    else:
        where = (f"train {table['train_subset']} ({table['train_videos']} videos), "
                 f"measure {table['val_subset']} ({table['val_videos']} videos)")
    sgd = SgdProbeConfig(**table.get("config", {}).get("sgd", {}))  # tables written before the config: defaults
    epochs = (f"mean of epochs {sgd.report_from}-{sgd.epochs - 1}" if sgd.report_from < sgd.epochs
              else f"epoch {sgd.epochs - 1}")
    lines = [
        f"linear probe: {where}; sgd = reference protocol ({epochs}), lbfgs = converged "
        "class-balanced logistic regression",
        header,
    ]
    for name, row in table["rows"].items():
        lines.append(f"{name:<{name_width}}" + "".join(_percent(row[key]) for key, _ in columns))
    note = subsample_note(table.get("subsample"), table.get("seed", 0))
    return "\n".join(lines + ([note] if note else []))


def subsample_note(subsample: dict | None, seed: int) -> str:
    """One line saying how much of each split a subsampled probe saw ("" when it saw everything)."""
    if not subsample or all(part["snippets"] == part["snippets_available"] and part["videos"] == part["videos_available"]
                            for part in subsample.values()):
        return ""
    parts = [f"{name} {part['snippets']:,} of {part['snippets_available']:,} snippets in {part['videos']:,} of "
             f"{part['videos_available']:,} videos" + _cap_words(part) for name, part in subsample.items()]
    return (f"subsampled (seed {seed}; data.videos, data.chunk, data.max_snippets, data.max_bytes): "
            f"{'; '.join(parts)}")


def _cap_words(part: dict) -> str:
    """" (capped at N)" when the split's cap removed snippets (tables before the cap was recorded: "")."""
    cap = part.get("cap") or 0
    return f" (capped at {cap:,})" if cap and part["snippets"] == cap < part["snippets_available"] else ""


def _percent(value) -> str:
    return f"{'n/a':>14}" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:>14.2f}"


def json_ready(value):
    """A copy of nested dicts/lists with NaN floats as None, for strict JSON."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
