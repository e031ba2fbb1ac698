"""The scoring benchmark's load generator, run in its own process: requests over
`connections` kept-alive HTTP connections on loopback, closed loop (each connection
sends its next request when the last is answered) or paced at a fixed rate.

Paced latency is measured from the moment a request was due, not from when a
connection got to send it, so a stalled server is charged for the queue it causes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Phase:
    bodies: tuple[bytes, ...]  # sent in turn
    seconds: float
    connections: int
    rate: float = 0.0  # requests/s; 0: closed loop


# One answer: (due, latency seconds, status, version); status 0: the request failed.
Answer = tuple[float, float, int, int]


def run_phase(url: str, phase: Phase) -> list[Answer]:
    """Runs `phase` in a fresh process and returns its answers."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_run, (url, phase))


def _run(url: str, phase: Phase) -> list[Answer]:
    return asyncio.run(_load(url, phase))


async def _load(url: str, phase: Phase) -> list[Answer]:
    limits = httpx.Limits(
        max_connections=phase.connections, max_keepalive_connections=phase.connections
    )
    headers = {"content-type": "application/json"}
    answers: list[Answer] = []
    async with httpx.AsyncClient(
        base_url=url, limits=limits, timeout=30, headers=headers
    ) as client:

        async def one(body: bytes, due: float) -> None:
            try:
                reply = await client.post("/v1/score", content=body)
                version = int(reply.json().get("version", -1)) if reply.status_code == 200 else -1
                answers.append((due, time.perf_counter() - due, reply.status_code, version))
            except httpx.HTTPError:
                answers.append((due, time.perf_counter() - due, 0, -1))

        end = time.perf_counter() + phase.seconds
        if phase.rate <= 0:

            async def loop(offset: int) -> None:
                i = offset
                while time.perf_counter() < end:
                    await one(phase.bodies[i % len(phase.bodies)], time.perf_counter())
                    i += phase.connections

            await asyncio.gather(*(loop(c) for c in range(phase.connections)))
        else:
            pending, start, i = set(), time.perf_counter(), 0
            while (due := start + i / phase.rate) < end:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                task = asyncio.create_task(one(phase.bodies[i % len(phase.bodies)], due))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
            await asyncio.gather(*pending)
    return answers
