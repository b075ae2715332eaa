"""Verifiable reward functions for the tests, offered through REWARD_FUNCTIONS as an installation offers its own."""


def ends_with_period(completions, **kwargs) -> list[float]:
    """Score 1 for a reply that ends with a full stop, else 0."""
    return [1.0 if completion[-1]["content"].rstrip().endswith(".") else 0.0 for completion in completions]
