"""PLACEHOLDER: local response normalization (being written)."""


def local_response_norm(x, n=5, k=2.0, alpha=1e-4, beta=0.75):
    raise NotImplementedError
