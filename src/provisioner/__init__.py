"""provisioner: a deployment coordinator for data products (Witboost Tech Adapter compatible)."""

__version__ = "0.1.0"
