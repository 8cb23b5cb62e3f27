"""dvmkit's benchmarks: measured figures and ratios against references measured in the same run.

Run ``python -m benchmarks crypto`` or ``python -m benchmarks relay`` (add ``--json`` for one JSON
object on stdout, ``--quick`` for a smoke-sized run). These are not timed tests: nothing here
asserts a speed; the goals of DESIGN.md §8 are printed with whether this run met them.
"""
