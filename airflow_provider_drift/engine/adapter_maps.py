"""The adapter maps, fitted from d x d moments (never from an SVD of the n x d data): see :mod:`.adapter`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

AdapterKind = Literal["procrustes", "ridge", "lowrank", "reverse", "blend"]
ADAPTER_KINDS: tuple[AdapterKind, ...] = get_args(AdapterKind)
_RANKS = (4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class _Moments:
    """Means and centred (cross-)covariances of paired rows: all a fit needs."""

    n: int
    mean_x: np.ndarray
    mean_y: np.ndarray
    cxy: np.ndarray
    cxx: np.ndarray | None
    cyy: np.ndarray | None = None

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray, *, with_cxx: bool, with_cyy: bool = False) -> _Moments:
        mean_x, mean_y = x.mean(axis=0, dtype=np.float64), y.mean(axis=0, dtype=np.float64)
        xc = x - mean_x.astype(np.float32)
        yc = y - mean_y.astype(np.float32)
        cxy = (xc.T @ yc).astype(np.float64)  # float32 GEMMs: the only O(n d^2) steps
        cxx = (xc.T @ xc).astype(np.float64) if with_cxx else None
        cyy = (yc.T @ yc).astype(np.float64) if with_cyy else None
        return cls(len(x), mean_x, mean_y, cxy, cxx, cyy)

    def bias(self, weight: np.ndarray) -> np.ndarray:
        return self.mean_y - self.mean_x @ weight


class _Fitter:
    """Every kind's weight from one set of moments, sharing the expensive decompositions."""

    def __init__(self, m: _Moments) -> None:
        self.m = m
        self._procrustes: np.ndarray | None = None
        self._eig: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._corrections: dict[float, tuple[np.ndarray, np.ndarray]] = {}
        self._reverse_eig: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._blend_scales: dict[float, float] = {}

    @property
    def cxx(self) -> np.ndarray:
        assert self.m.cxx is not None, "moments were computed without Cxx"
        return self.m.cxx

    def procrustes(self) -> np.ndarray:
        """Semi-orthogonal ``U @ V.T`` from the (thin) SVD of the centred cross-covariance.

        No least-squares scale: shrinking the centred part towards the old
        mean costs 0.01-0.02 ARR@10 on the real pair (docs/adapter-evidence.md).
        """
        if self._procrustes is None:
            self._procrustes = _polar(self.m.cxy)
        return self._procrustes

    def penalty(self, alpha: float) -> float:
        """The ridge lambda: ``alpha`` times the mean eigenvalue of Cxx (scale-free across n and d)."""
        return alpha * max(float(np.trace(self.cxx)) / len(self.cxx), 1e-12)

    def eig(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(eigenvalues, eigenvectors, eigenvectors.T @ Cxy) of Cxx: many penalties for one decomposition."""
        if self._eig is None:
            val, vec = np.linalg.eigh(self.cxx)
            self._eig = (np.maximum(val, 0.0), vec, vec.T @ self.m.cxy)
        return self._eig

    def solve(self, rhs: np.ndarray, alpha: float) -> np.ndarray:
        """(Cxx + lambda I)^-1 @ rhs."""
        if self._eig is None:  # one penalty: a linear solve is ~10x cheaper than eigh
            return np.linalg.solve(self.cxx + self.penalty(alpha) * np.eye(len(self.cxx)), rhs)
        val, vec, _ = self._eig
        return vec @ ((vec.T @ rhs) / (val + self.penalty(alpha))[:, None])

    def ridge(self, alpha: float) -> np.ndarray:
        return self.solve(self.m.cxy, alpha)

    def correction(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Ridge fit ``delta`` of the Procrustes residual and its output directions by variance."""
        if alpha not in self._corrections:
            delta = self.solve(self.m.cxy - self.cxx @ self.procrustes(), alpha)
            self._corrections[alpha] = (delta, _top_output_directions(delta, self.cxx, max(_RANKS)))
        return self._corrections[alpha]

    def lowrank(self, alpha: float, rank: int) -> np.ndarray:
        """Procrustes plus the rank-``rank`` reduced-rank-ridge correction of its residual."""
        delta, directions = self.correction(alpha)
        top = directions[:, :rank]
        return self.procrustes() + (delta @ top) @ top.T

    def reverse_eig(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(eigenvalues, eigenvectors V, Cxy @ V) of Cyy: every reverse penalty from one decomposition."""
        if self._reverse_eig is None:
            assert self.m.cyy is not None, "moments were computed without Cyy"
            val, vec = np.linalg.eigh(self.m.cyy)
            self._reverse_eig = (np.maximum(val, 0.0), vec, self.m.cxy @ vec)
        return self._reverse_eig

    def reverse_penalty(self, alpha: float) -> float:
        assert self.m.cyy is not None
        return alpha * max(float(np.trace(self.m.cyy)) / len(self.m.cyy), 1e-12)

    def reverse(self, alpha: float) -> np.ndarray:
        """``Cxy (Cyy + lambda I)^-1``: the transpose of the ridge fit of new vectors on old ones."""
        val, vec, cv = self.reverse_eig()
        return (cv / (val + self.reverse_penalty(alpha))) @ vec.T

    def weight(self, kind: AdapterKind, params: dict[str, Any]) -> np.ndarray:
        if kind == "procrustes":
            return self.procrustes()
        if kind == "ridge":
            return self.ridge(params["alpha"])
        if kind == "reverse":
            return self.reverse(params["alpha"])
        if kind == "blend":
            return self.blend(params["alpha"], params["mix"])[0]
        return self.lowrank(params["alpha"], params["rank"])

    def _mean_sq_norm(self, weight: np.ndarray, bias: np.ndarray) -> float:
        """Mean squared norm of ``x @ weight + bias`` over the fitted rows, from the moments."""
        spread = float(np.einsum("ij,ij->", weight, self.cxx @ weight)) / max(self.m.n, 1)
        return spread + float(np.sum((self.m.mean_x @ weight + bias) ** 2))

    def blend(self, alpha: float, mix: float) -> tuple[np.ndarray, np.ndarray]:
        """``mix`` of centred Procrustes plus ``1 - mix`` of the reverse map, scaled to equal mean norms.

        Procrustes keeps the old index's own bias (its mean direction); the
        reverse map scores like the new model. Where the old model is
        strongly anisotropic a mixture beats either (docs/adapter-evidence.md).
        """
        wp, wr = self.procrustes(), self.reverse(alpha)
        bp = self.m.bias(wp)
        scale = np.sqrt(
            self._mean_sq_norm(wp, bp) / max(self._mean_sq_norm(wr, np.zeros(wr.shape[1])), 1e-30)
        )
        return mix * wp + (1.0 - mix) * scale * wr, mix * bp

    def affine(self, kind: AdapterKind, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(weight, bias): the reverse map scores documents with no bias (a bias would add <b, y_j>)."""
        if kind == "blend":
            return self.blend(params["alpha"], params["mix"])
        weight = self.weight(kind, params)
        bias = np.zeros(weight.shape[1]) if kind == "reverse" else self.m.bias(weight)
        return weight, bias


def _polar(c: np.ndarray) -> np.ndarray:
    """The orthogonal polar factor ``U @ V.T`` of ``c`` (thin SVD ``U S V.T``), via the smaller Gram matrix.

    An eigendecomposition of the min(d_new, d_old)-sized Gram matrix is ~3x
    faster than an SVD at 1536 x 1536 and far faster at 3072 x 1536.
    Directions with singular values below 1e-6 of the largest carry no
    paired data; they map to zero instead of to an arbitrary rotation.
    """
    if c.shape[0] < c.shape[1]:
        return _polar(c.T).T
    s2, v = np.linalg.eigh(c.T @ c)
    keep = s2 > max(float(s2[-1]), 1e-300) * 1e-12
    v, s = v[:, keep], np.sqrt(s2[keep])
    return ((c @ v) / s) @ v.T


def _top_output_directions(delta: np.ndarray, cxx: np.ndarray, rank: int, iters: int = 3) -> np.ndarray:
    """Top-``rank`` eigenvectors of ``delta.T @ Cxx @ delta`` (the correction's output covariance).

    Seeded subspace iteration with thin products only: the d_old x d_old
    matrix is never formed, which matters at 3072-d. Columns are
    re-orthonormalised by Cholesky-QR (two GEMMs and a tiny factorisation),
    much cheaper than LAPACK QR on a busy multi-threaded BLAS.
    """
    d_old = delta.shape[1]
    width = min(d_old, rank + 16)

    def orthonormal(a: np.ndarray) -> np.ndarray:
        gram = a.T @ a
        gram += np.eye(len(gram)) * (np.trace(gram) * 1e-12 + 1e-300)
        return np.linalg.solve(np.linalg.cholesky(gram), a.T).T

    def apply(q: np.ndarray) -> np.ndarray:
        return delta.T @ (cxx @ (delta @ q))

    q = orthonormal(np.random.default_rng(0).standard_normal((d_old, width)))
    for _ in range(iters):
        q = orthonormal(apply(q))
    _, vec = np.linalg.eigh(q.T @ apply(q))
    return (q @ vec[:, ::-1])[:, : min(rank, width)]
