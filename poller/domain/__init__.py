"""The vocabulary of the product: states, the redemption model, errors, money, messages.

Imports nothing else of reward-poller and no third-party library."""
