"""Jobs that run many fits: cross-validation and hyper-parameter search."""
