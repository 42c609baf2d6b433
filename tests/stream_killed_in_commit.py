"""`padellm-ner stream`, killed with SIGKILL inside its N-th transaction commit: the fault suite's kill between
asking the broker to commit (EndTxn) and seeing its answer, a point no outside timing hits reliably.

Usage: python stream_killed_in_commit.py N DELAY_S <stream arguments>. The commit is started as usual; DELAY_S
seconds later, while it is in flight, the process kills itself. aiokafka's commit_transaction is wrapped here, in
the test's process only; the product has no fault hooks.
"""

import asyncio
import os
import signal
import sys

from aiokafka import AIOKafkaProducer

from entrypoints.cli import main

KILL_AT = int(sys.argv[1])
DELAY_S = float(sys.argv[2])
commit_transaction = AIOKafkaProducer.commit_transaction
commits = 0


async def commit_then_die(self: AIOKafkaProducer) -> None:
    global commits
    commits += 1
    if commits == KILL_AT:
        asyncio.get_running_loop().call_later(DELAY_S, os.kill, os.getpid(), signal.SIGKILL)
    await commit_transaction(self)


AIOKafkaProducer.commit_transaction = commit_then_die  # type: ignore[method-assign]
sys.exit(main(["stream", *sys.argv[3:]]))
