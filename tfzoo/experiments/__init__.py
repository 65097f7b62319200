"""Experiments that produce the evidence tables of the README (`python -m tfzoo.experiments.X`)."""
