"""Limits the flow language and the engine share, so the validator refuses exactly what the
engine could not run."""

from __future__ import annotations

# Steps one answer may chain without waiting for the caller (a say, a goto, an hours check...).
# The validator refuses a longer chain; the engine stops at it.
MAX_CHAIN = 100
