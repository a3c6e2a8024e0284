"""Lambda entry points: thin shells over :mod:`ecr_mirror.sync`; clients built once per container."""
