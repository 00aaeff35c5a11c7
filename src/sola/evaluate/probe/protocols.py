"""The two probe protocols on planned snippets: the reference SGD protocol (`reference_probe`) and the
converging L-BFGS logistic regression (`logistic_probe`), their metrics (`binary_metrics`), and the run of
both on the original or the adapted features (`probe_features`, `compare_probe`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from sola.adapt.transform import apply_adapter
from sola.core.devices import resolve_device
from sola.core.errors import StoreError
from sola.core.memory import require_memory
from sola.data.annotations import Annotations
from sola.evaluate.probe.config import METRICS, ProbeConfig, probe_config
from sola.evaluate.probe.snippets import ProbeData, SnippetSet, collect_snippets, on_store, subsample_summary


def build_matrix(snippets: SnippetSet, adapter=None, device: str | torch.device = "cpu",
                 progress: bool = False) -> tuple[torch.Tensor, ...]:
    """The chosen snippets as one L2-normalised matrix: (x (N, C) float32, action (N,), boundary (N,)).

    Videos are read one at a time; with an adapter each whole video is adapted first
    (`sola.adapt.transform.apply_adapter`), so memory holds the matrix and one video. Raises `StoreError`
    for NaN/Inf features.
    """
    store = snippets.store
    require_memory(4.0 * snippets.num_snippets * store.dim(), f"the probe's matrix of {snippets.num_snippets} snippets "
                   f"x {store.dim()} channels", "set data.max_snippets or data.max_bytes (--max-snippets, --max-bytes)")
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
    more: dict | None = None,
) -> dict:
    """Probe table for the demo and the CLI: `{"rows": {"baseline": {...}, "SoLa": {...}}, ...}`.

    `store`: a FeatureStore; `adapter`: a `SoLaAdapter` applied to `store` for the SoLa row, or
    `adapted_store`: a store already transformed by SoLa (same videos; no adapter work then).
    With neither, only the baseline row. `more`: row name -> `SoLaAdapter`, more rows on the same snippets (e.g.
    "fitted", the adapter as fitted beside the selected one). `train_subset`/`val_subset` as in `collect_snippets`;
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
    for name, extra in (more or {}).items():
        rows[name] = probe_features(data, extra, device=device, config=config, progress=progress)
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
