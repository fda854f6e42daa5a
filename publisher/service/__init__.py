"""The service: the one orchestrator (`pipeline.run_pass`), the scheduler around it, and the lease."""
