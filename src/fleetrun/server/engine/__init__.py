"""The engine: the one writer of invocation lifecycle state.

Every change of an invocation's status goes through `moves`: it asks
`fleetrun.core.lifecycle.next_status` where the invocation goes, writes that in the
caller's transaction with its transition record and its event, or writes nothing when
the table says it stays. Routes, the gateway, the dispatcher and run commands say what
happened; they never write a status themselves.
"""
