"""Helpers of the predictor-vs-peers benchmark (benchmarks/predictor_vs_peers.py, whose docstring describes it).

The script puts this folder's parent on ``sys.path`` (Python does, for the script it runs; the script adds it
when it is imported by path), so ``import peer_comparison.variants`` works from it; the tests in
Testing/benchmarks/ add it in their conftest.

- :mod:`peer_comparison.variants`: the shared sliding-window parameters and how each peer runs.
- :mod:`peer_comparison.torchvision_guard`: ``import torchvision`` refused in the process.
- :mod:`peer_comparison.nnunet_peer`: nnU-Net v2's predictor set up by hand, its Gaussian and float16 swapped.
- :mod:`peer_comparison.runners`: one function per variant running its sliding window (ours, nnU-Net, MONAI).
- :mod:`peer_comparison.preparation`: the case preprocessed, padded and saved with the networks' weights.
- :mod:`peer_comparison.measurement`: one timed run in a fresh process, and the order of all runs.
- :mod:`peer_comparison.agreement`: the differences between a row's probabilities and ours.
- :mod:`peer_comparison.cascade`: the reference-mask localizer and the coarse-to-fine check.
- :mod:`peer_comparison.report`: the table and the text below it.
"""
