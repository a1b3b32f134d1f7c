"""Pure logic shared by the server, the agent, the SDK and the CLI.

Nothing here does I/O or imports a heavy dependency: every decision (which nodes a
target selects, what a command's status is, what a frame on the agent channel looks
like) is a function over data, so that it can be tested with plain tables.
"""
