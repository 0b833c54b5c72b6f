"""Reference implementations: plain importable ML code that knows nothing of claims or verdicts."""
