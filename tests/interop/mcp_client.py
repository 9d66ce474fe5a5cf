"""An AI agent's side of `sendgate mcp`, with the official MCP Python SDK.

    mcp_client.py stdio SENDGATE_BIN API_URL TOKEN SENDER
    mcp_client.py http MCP_URL TOKEN SENDER

Connects (spawning `sendgate mcp` on stdio, or to its streamable HTTP
endpoint with the token as a bearer token), lists the tools, and calls each
as an agent would: check a send, request it, read its decision and the
mailbox's usage, ask for a send that needs approval, explain a decision.
Prints one JSON object with every structured result (tests/mcp.rs asserts
on it); exits non-zero on any protocol error.
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def exercise(session: ClientSession, sender: str) -> dict:
    await session.initialize()
    tools = await session.list_tools()
    out: dict = {"tools": sorted(t.name for t in tools.tools)}
    out["schemas"] = {t.name: bool(t.output_schema) for t in tools.tools}

    async def call(name: str, args: dict) -> dict:
        r = await session.call_tool(name, args, read_timeout_seconds=60)
        return {"is_error": bool(r.is_error), "structured": r.structured_content, "text": [c.text for c in r.content if getattr(c, "text", None)]}

    send = {"sender": sender, "recipient": "lead@prospect.example", "intent_id": f"{sender}-1"}
    out["check"] = await call("check_send", send)
    out["request"] = await call("request_send", send)
    out["decision"] = await call("get_decision", {"intent_id": send["intent_id"]})
    out["usage"] = await call("get_usage", {"scope": f"mailbox:{sender}"})
    out["held"] = await call("request_send", {**send, "intent_id": f"{sender}-2", "recipient": "cfo@prospect.example", "requires_approval": True})
    out["explain"] = await call("explain_decision", {"intent_id": send["intent_id"]})
    out["bad"] = await call("get_usage", {"scope": "nonsense"})
    return out


async def main() -> None:
    mode = sys.argv[1]
    if mode == "stdio":
        _, _, binary, api_url, token, sender = sys.argv
        params = StdioServerParameters(command=binary, args=["mcp"], env={"SENDGATE_MCP_API_URL": api_url, "SENDGATE_MCP_API_TOKEN": token, "SENDGATE_LOG": "warn"})
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                out = await exercise(session, sender)
    else:
        _, _, url, token, sender = sys.argv
        async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http:
            async with streamable_http_client(url, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    out = await exercise(session, sender)
    print(json.dumps(out))


asyncio.run(asyncio.wait_for(main(), timeout=120))
