"""The node agent: one small asyncio daemon per node.

It connects out to the server, proves its identity with the node's private key,
receives invocations, writes each to its journal before running it, runs steps as
child processes in their own process groups, spools their output to disk, and
streams it until the server has stored every byte.

This package must not import the server's dependencies (SQLAlchemy, Starlette,
FastAPI, uvicorn): a test proves it.
"""
