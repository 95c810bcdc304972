"""A synthetic data set in the anime schema with a planted structure.

Preferences = low-rank dot product + a non-linear term (|u·v| on two factors, which no dot
product reproduces) + user taste for genres + biases. Which items a user interacts with follows
those preferences (so the ranking task is learnable), and the rating 1-10 follows them too.
Item side features (type, episodes, genres) carry real signal. Deterministic from the seed.
"""

from __future__ import annotations

import numpy as np

from ncf_core.data.interactions import Interactions
from ncf_core.tasks import task_of

TYPES = ("TV", "OVA", "Movie", "Special", "ONA", "Music")
N_GENRES = 12


def generate(
    n_users: int = 1000,
    n_items: int = 400,
    per_user: int = 25,
    *,
    seed: int = 0,
    task: str = "rating",
    dim: int = 8,
    noise: float = 0.5,
) -> Interactions:
    rng = np.random.default_rng(seed)
    type_idx = rng.integers(len(TYPES), size=n_items)
    genres = (rng.random((n_items, N_GENRES)) < 0.18).astype(np.float32)
    genres[np.arange(n_items), rng.integers(N_GENRES, size=n_items)] = 1.0
    episodes = np.where(type_idx == 2, 1, rng.lognormal(2.5, 1.0, n_items).round() + 1)

    genre_factors = rng.normal(0, 0.5, (N_GENRES, dim)) / np.sqrt(dim)
    users = rng.normal(0, 1, (n_users, dim)) / np.sqrt(dim) * 2
    items = rng.normal(0, 1, (n_items, dim)) / np.sqrt(dim) * 2 + genres @ genre_factors
    taste = rng.normal(0, 0.4, (n_users, N_GENRES))
    type_bias = rng.normal(0, 0.3, len(TYPES))
    user_bias = rng.normal(0, 0.4, n_users)
    item_bias = rng.normal(0, 0.4, n_items) + type_bias[type_idx] + 0.1 * np.log1p(episodes)
    popularity = rng.normal(0, 1.0, n_items)

    counts = np.clip(rng.poisson(per_user, n_users), 5, max(5, n_items // 2))
    rows_u, rows_i, rows_s = [], [], []
    for start in range(0, n_users, 512):  # chunked: any size fits in memory
        u = np.arange(start, min(start + 512, n_users))
        score = (
            users[u] @ items.T
            + 0.8 * np.abs(users[u, :2] @ items[:, :2].T)
            + taste[u] @ genres.T / np.sqrt(N_GENRES)
            + user_bias[u, None]
            + item_bias[None, :]
        )
        gumbel = -np.log(-np.log(rng.random(score.shape)))
        order = np.argsort(-(2.0 * score + popularity[None, :] + gumbel), axis=1)
        for row, user in enumerate(u):
            chosen = order[row, : counts[user]]
            rows_u.append(np.full(len(chosen), user))
            rows_i.append(chosen)
            rows_s.append(score[row, chosen])
    uu, ii, ss = np.concatenate(rows_u), np.concatenate(rows_i), np.concatenate(rows_s)
    z = (ss - ss.mean()) / (ss.std() + 1e-9)
    rating = np.clip(np.round(6.5 + 1.6 * z + rng.normal(0, noise * 1.6, len(z))), 1, 10)
    timestamps = rng.permutation(len(uu)).astype(np.int64)

    type_hot = np.eye(len(TYPES), dtype=np.float32)[type_idx]
    log_eps = np.log1p(episodes).astype(np.float32)
    features = np.hstack([type_hot, (log_eps / log_eps.max())[:, None], genres])
    names = (*(f"type_{t}" for t in TYPES), "log_episodes", *(f"genre_{g}" for g in range(N_GENRES)))
    target = task_of(task).targets(rating, 10.0)
    return Interactions.from_codes(
        uu, ii, target, timestamps=timestamps, item_features=features, feature_names=names,
        n_users=n_users, n_items=n_items, name="synthetic",
    )
