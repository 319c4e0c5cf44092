"""What the people who run provisioner see of it: Prometheus metrics, each Tech Adapter's
health as seen from here. The engine reports through its ``EngineObserver`` port and never
imports this package."""
