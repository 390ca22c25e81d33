"""The tests' tolerances, one per purpose, each with the reason for its size."""

# A hand-written backward against central finite differences (tests/helpers/fd.py: eps 1e-6 in
# float64): truncation ~eps² ≈ 1e-12, rounding ~1e-16/eps ≈ 1e-10 of the function's size; a wrong
# factor, sign or missing term is off by far more.
FD_RTOL, FD_ATOL = 1e-6, 1e-8

# float64 against torch: the same formulas on the same numbers (values of order 1), rounded
# differently (torch's CPU kernels fuse multiply-adds, e.g. SGD's b·momentum + (1 − dampening)·g, and
# sum in other orders): a few ulps apart, after cancellation up to ~1e-14 relative; a wrong factor,
# sign or order is off by 1e-3 or more.
TORCH_RTOL, TORCH_ATOL = 1e-12, 1e-14
