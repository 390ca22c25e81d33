"""Benchmark suites behind ``handbp bench``; see ``handbp.commands.bench``."""
