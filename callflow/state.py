"""Where each call is in its flow, kept in the store so any web process can serve any webhook.

Holds the flow, the step, the tries at a menu and whether the notice was heard: never anything
about the caller. Every key expires; a Redis error becomes ``StoreUnavailable``.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from callflow import keys
from callflow.errors import StoreUnavailable


@dataclass
class CallState:
    flow: str = ""
    step: str = ""
    attempts: int = 0
    notice_heard: bool = False
    live: str = ""  # the opaque id of the call on the bridge, once there
    monitor_declined: bool = False  # the caller asked not to be monitored
    manager: str = ""  # on the manager line: who signed in by PIN
    choices: str = ""  # on the manager line: the call ids offered, by key, space-separated

    def to_hash(self) -> dict[str, str]:
        return {"flow": self.flow, "step": self.step, "attempts": str(self.attempts),
                "notice": "1" if self.notice_heard else "0", "live": self.live,
                "declined": "1" if self.monitor_declined else "0", "manager": self.manager,
                "choices": self.choices}

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> CallState:
        return cls(flow=data.get("flow", ""), step=data.get("step", ""),
                   attempts=int(data.get("attempts") or 0), notice_heard=data.get("notice") == "1",
                   live=data.get("live", ""), monitor_declined=data.get("declined") == "1",
                   manager=data.get("manager", ""), choices=data.get("choices", ""))


class CallStore:
    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.client = client
        self.ttl = ttl

    def load(self, call_sid: str) -> CallState:
        try:
            return CallState.from_hash(self.client.hgetall(keys.call(call_sid)))
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def save(self, call_sid: str, state: CallState) -> None:
        key = keys.call(call_sid)
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping=state.to_hash())
                pipe.expire(key, self.ttl)
                pipe.execute()
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def end(self, call_sid: str) -> None:
        try:
            self.client.delete(keys.call(call_sid))
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
