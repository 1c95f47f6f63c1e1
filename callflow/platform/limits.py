"""How much a flow file may hold: every bound the flow language keeps, in one place.

Admins edit the flows by hand and the service reloads them while calls run, so a careless or
hostile file must be refused in words, at file:line:col, never allowed to exhaust memory, time
or the stack of the process that answers the calls. The validator, the YAML reader and the
engine all read their limits from here; README.md's Flows section lists them.
"""

from __future__ import annotations

# A turn of a call (one webhook's answer) runs steps until one waits for Twilio (a notice's or
# a menu's gather, a connect) or ends the call: the steps that go straight on (say, play, hours,
# goto) and the one that ends the turn. The validator refuses a longer chain and the engine
# stops at it, so a flow that validates never meets the engine's limit.
MAX_STEPS_PER_TURN = 100

# A flow file's size in bytes: eight times a generated 1,000-step flow (bench/flowload.py).
MAX_FILE_BYTES = 1024 * 1024

# How deep mappings and lists may nest. A flow needs five (the file → teams → a team → its
# workers → a worker); the bound keeps every walk of a document far from the recursion limit.
MAX_DEPTH = 20

# Values in one file (every key, value and list item). A 1,000-step flow has about 9,000;
# the bound caps the memory a file can take however its bytes are spent.
MAX_VALUES = 100_000

# Characters of one text (what a step says, a name, a URL): Twilio's <Say> takes at most
# 4,096, and the validator holds each text to it once its placeholders are filled in.
MAX_TEXT_CHARS = 4096
