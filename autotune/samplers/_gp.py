"""A small exact Gaussian process for PSHE3's potential: Matern-5/2 with ARD on the unit cube.

Continuous coordinates (floats and the ordered integer cells) enter through scaled differences;
categorical coordinates enter through a mismatch term (``0`` same choice, ``1`` different), each with
its own length scale, so the cube's arbitrary order of choices never looks like a distance.  Both go
into one Matern-5/2 of the summed squared distance, as Optuna's GP does for mixed spaces.

Hyper-parameters (log length scales, log signal variance, log noise variance) are fitted by maximising
the log marginal likelihood plus Optuna's GP priors (inverse squared length scales near 1, Gamma priors
on the signal and the noise) with L-BFGS-B, warm-started from the last fit.  A dimension-scaled
log-normal length-scale prior (Hvarfner et al., 2024) was tried first: with it, 10-D fits at 10 to 50
trials ended with some length scales at 13 and the rest near 0.2 or with the noise at its bound, and
the sphere in 10-D was barely solved (regret 0.23 against 0.005 with these priors).  Everything is
float64 torch, so the potential's gradients for the leapfrog integrator come from autograd.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch

SQRT5 = math.sqrt(5.0)
NOISE_BOUNDS = (math.log(1e-6), math.log(0.5))
SIGNAL_BOUNDS = (math.log(0.01), math.log(100.0))


def matern52(xa: torch.Tensor, ca: torch.Tensor, xb: torch.Tensor, cb: torch.Tensor,
             inv_ls: torch.Tensor, n_cont: int, signal: torch.Tensor) -> torch.Tensor:
    """The kernel matrix between (continuous, categorical) point sets ``a`` and ``b``."""
    r2 = torch.zeros(xa.shape[0], xb.shape[0], dtype=torch.float64)
    if n_cont:
        d = (xa[:, None, :] - xb[None, :, :]) * inv_ls[:n_cont]
        r2 = r2 + (d * d).sum(-1)
    if ca.shape[1]:
        mismatch = (ca[:, None, :] != cb[None, :, :]).to(torch.float64)
        r2 = r2 + (mismatch * inv_ls[n_cont:] ** 2).sum(-1)
    r = torch.sqrt(r2.clamp_min(1e-30))
    return signal * (1.0 + SQRT5 * r + (5.0 / 3.0) * r2) * torch.exp(-SQRT5 * r)


def default_theta(dim: int) -> np.ndarray:
    """The fit's first start: length scales 1 (the cube's width), signal 1, noise 1e-2."""
    return np.concatenate([np.zeros(dim), [0.0, math.log(1e-2)]])


LS_BOUNDS = (math.log(0.01), math.log(100.0))


@dataclass
class GP:
    """A fitted GP: training inputs, standardised targets, hyper-parameters and the Cholesky factor."""

    x: torch.Tensor  # (n, n_cont) continuous coordinates
    c: torch.Tensor  # (n, n_cat) category indices
    y: torch.Tensor  # (n,) standardised targets
    theta: np.ndarray  # log length scales (n_cont + n_cat), log signal, log noise
    n_cont: int

    def __post_init__(self) -> None:
        t = torch.as_tensor(self.theta, dtype=torch.float64)
        self.inv_ls = torch.exp(-t[:-2])
        self.signal = torch.exp(t[-2])
        self.noise = torch.exp(t[-1])
        k = matern52(self.x, self.c, self.x, self.c, self.inv_ls, self.n_cont, self.signal)
        self.chol = _cholesky(k, float(self.noise))
        self.alpha = torch.cholesky_solve(self.y[:, None], self.chol)[:, 0]
        self.k_inv = torch.cholesky_inverse(self.chol)  # a matmul per prediction beats a triangular solve

    @property
    def lengthscales(self) -> np.ndarray:
        return np.exp(self.theta[:-2])

    def cross(self, xq: torch.Tensor, cq: torch.Tensor) -> torch.Tensor:
        return matern52(xq, cq, self.x, self.c, self.inv_ls, self.n_cont, self.signal)

    def predict(self, xq: torch.Tensor, cq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance of the latent function (differentiable in ``xq``)."""
        kq = self.cross(xq, cq)
        mean = kq @ self.alpha
        var = (self.signal - ((kq @ self.k_inv) * kq).sum(1)).clamp_min(1e-12)
        return mean, var

    def condition(self, xn: torch.Tensor, cn: torch.Tensor, yn: torch.Tensor) -> GP:
        """The same GP with extra (fantasy) observations appended, hyper-parameters kept."""
        return GP(torch.cat([self.x, xn]), torch.cat([self.c, cn]), torch.cat([self.y, yn]), self.theta, self.n_cont)


def _cholesky(k: torch.Tensor, noise: float) -> torch.Tensor:
    eye = torch.eye(k.shape[0], dtype=torch.float64)
    jitter = 0.0
    for _ in range(6):
        chol, info = torch.linalg.cholesky_ex(k + (noise + jitter) * eye)
        if int(info) == 0:
            return chol
        jitter = max(1e-8, jitter * 10.0)
    return torch.linalg.cholesky(k + (noise + 1.0) * eye)


def _neg_log_posterior(theta: torch.Tensor, x: torch.Tensor, c: torch.Tensor, y: torch.Tensor,
                       n_cont: int) -> torch.Tensor:
    inv_ls, signal, noise = torch.exp(-theta[:-2]), torch.exp(theta[-2]), torch.exp(theta[-1])
    k = matern52(x, c, x, c, inv_ls, n_cont, signal)
    k = k + (noise + 1e-8) * torch.eye(x.shape[0], dtype=torch.float64)
    chol, info = torch.linalg.cholesky_ex(k)
    if int(info) != 0:
        return theta.sum() * 0.0 + 1e10
    alpha = torch.cholesky_solve(y[:, None], chol)[:, 0]
    nll = 0.5 * (y * alpha).sum() + torch.log(torch.diagonal(chol)).sum()
    # Optuna's GP priors: inverse squared length scales kept near 1, Gamma(2, 1) on the signal variance
    # and Gamma(1.1, 30) on the noise variance (small noise unless the data insist)
    inv_sq = inv_ls * inv_ls
    prior = (0.1 / inv_sq + 0.1 * inv_sq).sum() - (torch.log(signal) - signal) - (0.1 * torch.log(noise) - 30.0 * noise)
    return nll + prior


def fit(x: np.ndarray, c: np.ndarray, y: np.ndarray, n_cont: int, starts: list[np.ndarray],
        maxiter: int = 50) -> GP:
    """Fit hyper-parameters from each start (the best wins) and return the conditioned GP."""
    xt = torch.as_tensor(x, dtype=torch.float64)
    ct = torch.as_tensor(c, dtype=torch.long)
    yt = torch.as_tensor(y, dtype=torch.float64)
    bounds = [LS_BOUNDS] * (x.shape[1] + c.shape[1]) + [SIGNAL_BOUNDS, NOISE_BOUNDS]

    def objective(v: np.ndarray) -> tuple[float, np.ndarray]:
        theta = torch.tensor(v, dtype=torch.float64, requires_grad=True)
        loss = _neg_log_posterior(theta, xt, ct, yt, n_cont)
        loss.backward()
        grad = theta.grad.numpy() if theta.grad is not None else np.zeros_like(v)
        if not math.isfinite(float(loss)) or not np.all(np.isfinite(grad)):
            return 1e10, np.zeros_like(v)
        return float(loss), grad.copy()

    best_theta, best_value = None, math.inf
    for start in starts:
        start = np.clip(np.asarray(start, dtype=float), [b[0] for b in bounds], [b[1] for b in bounds])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = scipy.optimize.minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds,
                                          options={"maxiter": maxiter})
        if float(res.fun) < best_value:
            best_theta, best_value = np.asarray(res.x, dtype=float), float(res.fun)
    assert best_theta is not None
    return GP(xt, ct, yt, best_theta, n_cont)
