"""Layer 1: the numerics core (dtypes, granularity, affine primitives, QTensor)."""
