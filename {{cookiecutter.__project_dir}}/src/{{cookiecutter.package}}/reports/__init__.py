"""Figures and run logs: the `report` command and the notebooks' plots."""
