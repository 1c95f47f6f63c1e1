"""The conference bridge: the caller's private room, the workers' legs rung over REST, the
first to accept joined, the no-answer step when nobody does."""
