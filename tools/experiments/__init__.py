"""One-off ELPV experiments (ablations, variants, paired comparisons, the learning curve); `make bench` is the
product's benchmark suite, these are the studies whose figures docs/elpv.md reports. Run from the repository root,
e.g. `python -m tools.experiments.elpv_variant --help`."""
