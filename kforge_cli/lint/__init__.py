"""Rules over a loaded job, and the orchestration that runs them all."""
