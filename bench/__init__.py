"""Benchmarks: ``make bench`` runs every ``bench/bench_*.py`` through ``bench/run.py``."""
