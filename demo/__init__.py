"""`make demo`: ecr-mirror end to end on loopback (moto + two docker-registry processes). Entry point: demo/run.py."""
