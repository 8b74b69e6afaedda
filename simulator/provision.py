"""`python -m simulator live --provision`: register the fleet's devices and gateways,
so that each sender posts with its own token rather than a fleet-wide one.

Every device is registered (in arrays of PROVISION_CHUNK); a device or gateway
that exists already (an earlier run) gets a new token by rotation instead. Each
gateway sender becomes a gateway `GW-<n>` with its devices attached. The tokens
live only in this process's memory.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp

PROVISION_CHUNK = 1000


class ProvisionError(Exception):
    """The registry refused; the message names the request and the answer."""


class Provisioner:
    """Talks to the registry with the operator token; see the module docstring."""

    def __init__(self, client: aiohttp.ClientSession, base_url: str, operator_token: str,
                 concurrency: int) -> None:
        self.client = client
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {operator_token}"}
        self.gate = asyncio.Semaphore(concurrency)

    async def call(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        async with self.gate, self.client.request(method, self.base_url + path, json=body,
                                                  headers=self.headers) as response:
            text = await response.text()
        if response.status not in (200, 201, 409):
            raise ProvisionError(f"{method} {path} answered {response.status}: {text[:200]}")
        return response.status, json.loads(text) if text else None

    async def devices(self, devices: list[tuple[str, str]]) -> dict[str, str]:
        """Tokens by device id for (id, kind) pairs: registered, or rotated if they exist."""
        chunks = [devices[i:i + PROVISION_CHUNK] for i in range(0, len(devices), PROVISION_CHUNK)]
        tokens: dict[str, str] = {}
        for found in await asyncio.gather(*(self.chunk(c) for c in chunks)):
            tokens.update(found)
        return tokens

    async def chunk(self, devices: list[tuple[str, str]]) -> dict[str, str]:
        status, body = await self.call("POST", "/v1/devices",
                                       [{"id": i, "kind": k} for i, k in devices])
        if status == 201:
            return {d["id"]: d["token"] for d in body}
        # Some exist already: one at a time, rotating those.
        found = await asyncio.gather(*(self.device(i, k) for i, k in devices))
        return dict(found)

    async def device(self, device_id: str, kind: str) -> tuple[str, str]:
        status, body = await self.call("POST", "/v1/devices", {"id": device_id, "kind": kind})
        if status == 409:
            status, body = await self.call("POST", f"/v1/devices/{device_id}/token")
        return device_id, body["token"]

    async def gateway(self, gateway_id: str, device_ids: list[str]) -> str:
        """The token of a gateway (registered, or rotated if it exists) with these devices attached."""
        status, body = await self.call("POST", "/v1/gateways", {"id": gateway_id})
        if status == 409:
            status, body = await self.call("POST", f"/v1/gateways/{gateway_id}/token")
        await asyncio.gather(*(self.call("PUT", f"/v1/gateways/{gateway_id}/devices/{d}")
                               for d in device_ids))
        return body["token"]


async def sender_tokens(provisioner: Provisioner, senders: list, meter_ids: list[str],
                        vehicle_ids: list[str]) -> list[str]:
    """Each sender's token, in the senders' order: its gateway's, or its one device's."""
    ids = {"meter": meter_ids, "vehicle": vehicle_ids}
    device_tokens = await provisioner.devices(
        [(i, "meter") for i in meter_ids] + [(i, "vehicle") for i in vehicle_ids])
    gateways = [s for s in senders if s.gateway]
    gateway_tokens = await asyncio.gather(*(
        provisioner.gateway(f"GW-{n}", [ids[kind][i] for kind, i in sender.devices])
        for n, sender in enumerate(gateways, start=1)))
    by_gateway = dict(zip(map(id, gateways), gateway_tokens, strict=True))
    return [by_gateway[id(s)] if s.gateway else device_tokens[ids[s.devices[0][0]][s.devices[0][1]]]
            for s in senders]
