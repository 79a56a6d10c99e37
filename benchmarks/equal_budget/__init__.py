"""Helpers of the equal-budget comparison (benchmarks/recipes_table.py, benchmarks/nnunet_peer_training.py).

The scripts in benchmarks/ put this folder's parent on ``sys.path`` (Python does, for the script it runs), so
``import equal_budget.cases`` works from them; the tests in Testing/benchmarks/ add it in their conftest.
"""
