"""Helpers around the product: the server launcher of tests and benchmarks, the metric-name lint of the
deployment files, the demo model's build, and the temporal zoom's per-frame features and training."""
