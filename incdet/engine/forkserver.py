"""The local engine's fork server, which starts its worker processes; standard library only.

A job starts it first thing (:func:`incdet.commands._batch.start_workers`), before this process
imports torch: the fork server's own import of incdet (seconds, on one core) then runs on another
core while this process imports and loads its networks, instead of after them, when the workers are
first needed and the first group would wait for it.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import signal

# What every worker needs imported; the fork server imports it once and each worker is forked from it.
PRELOAD = ["incdet.engine.steps"]


def start_fork_server() -> multiprocessing.context.BaseContext:
    """The workers' process context, its fork server started (if not running yet) with SIGINT blocked,
    which it and every worker it forks inherit.

    A fork server that gets Ctrl-C while it imports incdet (the first seconds) prints a 30-line
    traceback, and workers would stop mid-image; the main process handles Ctrl-C for them and ends
    them (the local engine's ``_exit_with`` watch). Blocked rather than ignored: a Ctrl-C that comes
    meanwhile reaches this process once unblocked instead of being lost, and this works in any
    thread. The resource tracker starts first, as starting it unblocks SIGINT (the same trick,
    CPython bpo-33613)."""
    # forkserver: forking a parent that already runs torch/OpenMP threads can deadlock children.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    multiprocessing.resource_tracker.ensure_running()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return context
