"""The engine's allocator settings: memory a forward frees is reused by the next without faulting pages in."""

import json
import platform
import subprocess
import sys

import pytest

ROUNDS = """
import json, resource, sys
import torch
if sys.argv[1] == "keep":
    from workers.engine.memory import keep_freed_memory
    assert keep_freed_memory()
faults = []
for _ in range(3):  # what a forward does: allocate its outputs (here 24 blocks of 8 MB), then free them
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [torch.ones(2 << 20) for _ in range(24)]
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del blocks
print(json.dumps(faults))
"""


def _faults(setting: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", ROUNDS, setting], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc's")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    pages = 24 * (8 << 20) // 4096
    default, kept = _faults("default"), _faults("keep")
    assert default[1] > pages // 2, default  # glibc handed the first round's memory back: the second faults it in
    assert kept[-1] < pages // 10, kept  # once the heap has grown to a round's size, a round faults nothing in
