"""Benchmarks behind ``court-hub bench``: each measures this project's path and a baseline side by
side in one run and prints both and their ratio (DESIGN.md §6)."""
