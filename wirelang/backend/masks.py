"""Edge masks: exactly k active candidates, chosen by each wiring method.

Every learned wiring (a graph's edges, a sparse layer's weight, or a pool of several) is a list
of weight tensors plus a boolean `candidate` tensor for each (False where the tensor stores an
entry that is not a candidate, e.g. a node's edge to itself when self loops are off). A method
turns them into boolean masks with exactly k True entries among the candidates.

The DNW rule: forward with the k largest |w|; backward passes the gradient to every candidate as
if it were present (straight-through), so an outside edge whose gradient keeps pointing the same
way grows until it enters the top k. `dnw_no_update` masks the gradient instead.

Selection is O(n): `kthvalue` finds the k-th largest |w|; ties at the threshold go to the lowest
flat index, so the mask is a pure function of the weights and identical on every DDP rank.
During training `TopK` makes it cheaper still: the weights move little between steps, so it
remembers a score below the k-th largest and ranks only the scores above it (the same exact
mask, from a selection over about k scores instead of all n).
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn

from wirelang import methods
from wirelang.ir import core


def topk_mask(scores: Tensor, k: int) -> Tensor:
    """Boolean mask of the k largest scores (exactly k), ties broken towards lower indices."""
    n = scores.numel()
    if k >= n:
        return torch.ones_like(scores, dtype=torch.bool)
    if k <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    # the (n-k+1)-th smallest is the k-th largest
    threshold = torch.kthvalue(scores, n - k + 1).values
    above = scores > threshold
    need = k - int(above.sum())
    if need:
        ties = torch.nonzero(scores == threshold).flatten()[:need]
        above[ties] = True
    return above


class TopK:
    """Exact `topk_mask`, ranking only the scores above a remembered lower bound.

    `low` is a score that the previous call found below the k-th largest. If at least k scores
    still exceed it, the top k are among them (every other score is <= low), so the k-th
    largest is selected from that band alone; otherwise the bound is recomputed over all
    scores. The result never depends on `low`: it equals `topk_mask(scores, k)`.
    """

    def __init__(self, margin: float = 0.25):
        self.margin = margin
        self.low: Tensor | None = None

    def __call__(self, scores: Tensor, k: int) -> Tensor:
        n = scores.numel()
        if k >= n or k <= 0:
            return topk_mask(scores, k)
        extra = k + int(self.margin * k) + 64  # the band's target size
        if self.low is not None:
            idx = (scores > self.low).nonzero().squeeze(1)
            if idx.numel() >= k:
                return self._from_band(scores, idx, k, extra)
        if extra >= n:
            self.low = None
            return topk_mask(scores, k)
        self.low = torch.kthvalue(scores, n - extra + 1).values
        return self._from_band(scores, (scores > self.low).nonzero().squeeze(1), k, extra)

    def _from_band(self, scores: Tensor, idx: Tensor, k: int, extra: int) -> Tensor:
        sub = scores[idx]
        m = sub.numel()
        if m < k:  # ties at the bound: rank everything
            self.low = None
            return topk_mask(scores, k)
        threshold = torch.kthvalue(sub, m - k + 1).values
        above = sub > threshold
        chosen = idx[above]
        need = k - chosen.numel()
        if need:  # ties at the threshold go to the lowest flat indices (idx is sorted)
            chosen = torch.cat([chosen, idx[sub == threshold][:need]])
        out = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        out[chosen] = True
        if m > extra:  # tighten the bound for the next call
            self.low = torch.kthvalue(sub, m - extra + 1).values
        return out


class _MaskedWeight(torch.autograd.Function):
    """w * m forward; backward passes the full gradient (straight-through) or the masked one."""

    @staticmethod
    def forward(ctx, w: Tensor, m: Tensor, straight_through: bool) -> Tensor:
        ctx.save_for_backward(m)
        ctx.straight_through = straight_through
        return w * m

    @staticmethod
    def backward(ctx, grad: Tensor):
        (m,) = ctx.saved_tensors
        return (grad if ctx.straight_through else grad * m), None, None


def apply_mask(w: Tensor, m: Tensor, straight_through: bool) -> Tensor:
    # a boolean mask multiplies as 0/1 without a float copy of it
    return _MaskedWeight.apply(w, m if m.dtype == torch.bool else m.to(w.dtype), straight_through)


def _flat_scores(weights: list[Tensor], candidates: list[Tensor | None]) -> Tensor:
    """|w| over all tensors, flattened, with non-candidates below every real score."""
    if len({(w.dtype, w.device) for w in weights}) > 1:
        parts = [w.detach().abs().flatten().to(weights[0]) for w in weights]
    else:
        parts = None
    # one buffer written in place: no per-tensor copies to concatenate
    out = torch.empty(
        sum(w.numel() for w in weights), dtype=weights[0].dtype, device=weights[0].device
    )
    start = 0
    for i, (w, c) in enumerate(zip(weights, candidates, strict=True)):
        seg = out[start : start + w.numel()]
        if parts is not None:
            seg.copy_(parts[i])
        else:
            torch.abs(w.detach().reshape(-1), out=seg)
        if c is not None:
            seg.masked_fill_(~c.reshape(-1), -1.0)
        start += w.numel()
    return out


def _split(flat: Tensor, like: list[Tensor]) -> list[Tensor]:
    out, start = [], 0
    for w in like:
        out.append(flat[start : start + w.numel()].view_as(w))
        start += w.numel()
    return out


def weights_key(weights: list[Tensor]) -> tuple:
    """What identifies a list of weights for a cache of what is derived from them: each one's
    identity, in-place version, device and dtype. `module.to(device)` and `.double()` replace
    a parameter's data and keep its identity and version, so those alone would hand back the
    old device's tensors."""
    return tuple((id(w), w._version, w.device, w.dtype) for w in weights)


class Pool:
    """One budget shared by several masks: top k over all members' candidates together.

    Not an nn.Module: members are owned by their graphs and layers; the pool only ranks them.
    """

    def __init__(self, name: str, k: int):
        self.name, self.k = name, k
        self.members: list[EdgeMask] = []
        self._cache: tuple | None = None
        self._select = TopK()

    def masks(self) -> dict[int, list[Tensor]]:
        weights = [w for m in self.members for w in m.weights()]
        key = weights_key(weights)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        cands = [c for m in self.members for c in m.candidate_masks()]
        select = self.__dict__.setdefault("_select", TopK())
        flat = select(_flat_scores(weights, cands), self.k)
        parts = _split(flat, weights)
        out, i = {}, 0
        for m in self.members:
            n = len(m.weights())
            out[id(m)] = parts[i : i + n]
            i += n
        self._cache = (key, out)
        return out


class EdgeMask(nn.Module):
    """The mask state of one learned wiring. `weights()` returns the tensors it masks."""

    def __init__(
        self,
        wiring: core.Wiring,
        k: int,
        owner: nn.Module,
        names: list[str],
        candidates: list[Tensor | None],
        seed: int = 0,
        fixed: list[Tensor] | None = None,
        outside: Tensor | None = None,
    ):
        super().__init__()
        # The method and its typed parameters (`core.WIRING_TYPES`), as the IR holds them.
        self.wiring, self.method, self.k = wiring, wiring.method, k
        # The weights live in their owner (a graph's wiring or a conv); keep a plain reference
        # (not a submodule) so that deepcopy and state_dict stay consistent.
        object.__setattr__(self, "_owner", owner)
        self._names = list(names)
        self.pool: Pool | None = None
        # Fraction of training done, set by the trainer (l1_anneal's schedule). A buffer, so a
        # checkpoint restores the mask it was trained to, not the all-candidates start.
        self.register_buffer("progress_done", torch.tensor(0.0, dtype=torch.float64))
        for i, c in enumerate(candidates):
            self.register_buffer(f"candidate_{i}", c, persistent=False)
        self.n = len(candidates)
        self.seed = seed
        # Masks that do not follow the weights (fixed at the start, or in a second phase) are
        # buffers, so checkpoints carry them.
        spec = self.spec
        self.frozen = spec.mask_fixed_at_start
        shapes = [w.shape for w in self.weights()]
        for i, shape in enumerate(shapes):
            self.register_buffer(f"fixed_{i}", torch.zeros(shape, dtype=torch.bool))
        if spec.edges_listed:
            self._set_fixed(fixed)
        elif spec.mask_fixed_at_start:
            self._set_fixed(self._random_masks())
        self.register_buffer("phase", torch.tensor(1))
        # DNW ranking the whole square (`dnw(rank=square)`): the fixed |w| of the entries that
        # are not candidates, ranked with the candidates' scores; derived from the seed, so not
        # saved in checkpoints.
        self.register_buffer("outside", outside, persistent=False)
        self._eval_cache: tuple | None = None
        self._select = TopK()

    # -- inputs
    @property
    def spec(self) -> methods.WiringSpec:
        """The method's properties (the registry's, not a copy: masks saved whole stay current)."""
        return methods.WIRINGS[self.method]

    @property
    def progress(self) -> float:
        return float(self.progress_done)

    @progress.setter
    def progress(self, value: float) -> None:
        self.progress_done.fill_(float(value))

    def weights(self) -> list[Tensor]:
        return [getattr(self._owner, n) for n in self._names]

    def candidate_masks(self) -> list[Tensor | None]:
        return [getattr(self, f"candidate_{i}") for i in range(self.n)]

    def fixed_masks(self) -> list[Tensor]:
        return [getattr(self, f"fixed_{i}") for i in range(self.n)]

    def _set_fixed(self, masks: list[Tensor]) -> None:
        for buf, m in zip(self.fixed_masks(), masks, strict=True):
            buf.copy_(m)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # `wiring fixed` takes its edges from the spec. A checkpoint trained under another
        # method (the run a frozen spec was exported from) stores its own, unused fixed_i
        # buffers with the same keys: they must not overwrite the spec's edges.
        keep = [f.clone() for f in self.fixed_masks()] if self.spec.edges_listed else None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if keep is not None:
            self._set_fixed(keep)

    def _random_masks(self) -> list[Tensor]:
        # Depends only on the seed and the candidate layout, never on the weights.
        weights = self.weights()
        seed = self.wiring.seed  # a method with a mask fixed at the start draws it from a seed
        gen = torch.Generator().manual_seed(int(seed if seed is not None else self.seed))
        cands = torch.cat(
            [
                (c.flatten() if c is not None else torch.ones(w.numel(), dtype=torch.bool))
                for w, c in zip(weights, self.candidate_masks(), strict=True)
            ]
        )
        idx = torch.nonzero(cands).flatten()
        chosen = idx[torch.randperm(idx.numel(), generator=gen)[: self.k]]
        flat = torch.zeros(cands.numel(), dtype=torch.bool)
        flat[chosen] = True
        return _split(flat, weights)

    # -- the masks
    @property
    def two_phase_fixed(self) -> bool:
        return self.spec.two_phase and int(self.phase) == 2

    @property
    def straight_through(self) -> bool:
        """Whether the backward pass now reaches every candidate (the DNW rule), not only the
        active edges: never once a second phase has fixed the mask."""
        return self.spec.straight_through and not self.two_phase_fixed

    def freeze_topk(self) -> None:
        """End of phase one of lottery / fine_tune: fix the top-k of the current weights."""
        self._set_fixed(self.topk())
        self.phase.fill_(2)

    def topk(self) -> list[Tensor]:
        if self.pool is not None:
            return self.pool.masks()[id(self)]
        weights = self.weights()
        select = self.__dict__.setdefault("_select", TopK())  # also on masks pickled before TopK
        scores = _flat_scores(weights, self.candidate_masks())
        if self.outside is None:
            return _split(select(scores, self.k), weights)
        # the k largest over candidates and outside entries together; those that land outside
        # carry no edge, so fewer than k candidates may be active
        n = scores.numel()
        flat = select(torch.cat([scores, self.outside.to(scores)]), self.k)[:n]
        return _split(flat, weights)

    def _complete(self) -> list[Tensor]:
        return [
            (c.clone() if c is not None else torch.ones_like(w, dtype=torch.bool))
            for w, c in zip(self.weights(), self.candidate_masks(), strict=True)
        ]

    def active(self) -> list[Tensor]:
        """The edges the forward pass uses now (at evaluation for stochastic methods)."""
        spec = self.spec
        if self.frozen or self.two_phase_fixed:
            return [f.clone() for f in self.fixed_masks()]
        if spec.trains_complete:  # in its first phase if it has two
            return self._complete()
        if spec.anneals:
            return self._anneal_masks()
        return self.topk()

    def _anneal_masks(self) -> list[Tensor]:
        # keep the n(p) largest, n going linearly from every candidate to k by progress `end`
        total = sum(
            int(c.sum()) if c is not None else w.numel()
            for w, c in zip(self.weights(), self.candidate_masks(), strict=True)
        )
        end = max(self.wiring.end, 1e-9)
        frac = min(1.0, self.progress / end)
        n = round(total - (total - self.k) * frac)
        weights = self.weights()
        return _split(topk_mask(_flat_scores(weights, self.candidate_masks()), n), weights)

    def forward(self) -> list[Tensor]:
        """The effective weights w * m, with the method's gradient rule."""
        weights = self.weights()
        straight_through = self.straight_through
        if not self.training and not torch.is_grad_enabled():
            # inference: the same weights give the same tensors, so that what the lowering
            # derives from them (sparse plans) is reused from batch to batch
            key = (
                weights_key(weights),
                int(self.phase),
                self.progress,
                torch.is_inference_mode_enabled(),
            )
            cached = self.__dict__.get("_eval_weights")
            if cached is None or cached[0] != key:
                cached = (key, _fold(weights, self._cached_active(weights)))
                self.__dict__["_eval_weights"] = cached
            return list(cached[1])
        masks = self._cached_active(weights)
        if self.spec.stochastic_mask and self.training:
            masks = self._dropout(weights, masks)
        return [apply_mask(w, mk, straight_through) for w, mk in zip(weights, masks, strict=True)]

    @torch.no_grad()
    def folded(self) -> list[Tensor]:
        """The effective weights at evaluation as plain tensors (w * m, inactive entries 0, no
        autograd): what an exported program holds instead of this mask. Computed eagerly, so
        that no data-dependent selection is left for a tracer (torch.export, ONNX) to see."""
        weights = self.weights()
        return _fold(weights, self._cached_active(weights))

    def _cached_active(self, weights: list[Tensor]) -> list[Tensor]:
        # In evaluation the weights do not change between batches: rank them once.
        if self.training:
            self._eval_cache = None
            return self.active()
        key = weights_key(weights) + (int(self.phase), self.progress)
        if self._eval_cache is None or self._eval_cache[0] != key:
            self._eval_cache = (key, self.active())
        return self._eval_cache[1]

    def _dropout(self, weights: list[Tensor], top: list[Tensor]) -> list[Tensor]:
        rho = self.wiring.rho
        if self.wiring.scope == "node":
            top = self._per_node_topk(weights)
        out = []
        for w, t, c in zip(weights, top, self.candidate_masks(), strict=True):
            keep = torch.rand(w.shape, device=w.device) >= rho
            cand = c if c is not None else torch.ones_like(t)
            out.append(t | (keep & cand))
        return out

    def _per_node_topk(self, weights: list[Tensor]) -> list[Tensor]:
        """Top edges per target node (rows), the budget split over rows by their candidates."""
        out = []
        total = sum(
            int(c.sum()) if c is not None else w.numel()
            for w, c in zip(weights, self.candidate_masks(), strict=True)
        )
        for w, c in zip(weights, self.candidate_masks(), strict=True):
            rows = w.reshape(w.shape[0], -1)
            cand = (c if c is not None else torch.ones_like(w, dtype=torch.bool)).reshape(
                rows.shape
            )
            quota = (cand.sum(1).double() * self.k / total).floor().long().clamp(min=1)
            scores = torch.where(cand, rows.detach().abs(), torch.full_like(rows, -1.0))
            order = scores.argsort(dim=1, descending=True, stable=True)
            rank = torch.empty_like(order)
            positions = torch.arange(rows.shape[1], device=rows.device)
            rank.scatter_(1, order, positions.expand_as(order).contiguous())
            out.append((rank < quota[:, None]).reshape(w.shape) & cand.reshape(w.shape))
        return out

    def regularization(self) -> Tensor:
        """The method's penalty on the edge weights (L1 for `l1_anneal`), else zero."""
        if self.spec.regularizer != "l1":
            return torch.zeros(())
        strength = self.wiring.strength
        return strength * sum(w.abs().sum() for w in self.weights())

    def extra_repr(self) -> str:
        return f"method={self.method}, k={self.k}" + (
            f", pool={self.pool.name}" if self.pool else ""
        )


def _fold(weights: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
    """w * m for each weight, detached: the weights a mask leaves at evaluation."""
    return [w.detach() * m for w, m in zip(weights, masks, strict=True)]


def mask_hash(masks: list[Tensor]) -> str:
    h = hashlib.sha256()
    for m in masks:
        h.update(m.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
