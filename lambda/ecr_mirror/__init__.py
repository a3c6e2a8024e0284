"""ecr-mirror: keep multi-architecture container images mirrored into Amazon ECR."""

__version__ = "0.1.0"
