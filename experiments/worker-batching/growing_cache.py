"""A KV cache that grows in place against transformers' DynamicCache (torch.cat every forward): median time of a
decoding forward of R rows on a cache of 150 columns over 7 consecutive steps, the better of two rounds, the two
kinds alternating; and the largest difference of their hidden states (both must compute the same).

    .venv/bin/python experiments/worker-batching/growing_cache.py [--rows 16,64,128]
"""

import argparse
import statistics
import time

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from workers.engine import loading

COLUMNS, STEPS = 150, 8


class GrowingLayer(DynamicLayer):
    """Keys and values are views of buffers with spare columns; `update` writes the new ones in place."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, spare: int = 32):
        super().__init__()
        self.device, self.is_initialized, self.spare = keys.device, True, spare
        self._allocate(keys, values, keys.shape[2] + spare)

    def _allocate(self, keys: torch.Tensor, values: torch.Tensor, capacity: int) -> None:
        b, h, n, d = keys.shape
        self._keys, self._values = keys.new_empty((b, h, capacity, d)), values.new_empty((b, h, capacity, d))
        self._keys[:, :, :n], self._values[:, :, :n] = keys, values
        self.keys, self.values = self._keys[:, :, :n], self._values[:, :, :n]

    def update(self, key_states, value_states, *args, **kwargs):
        n, m = self.keys.shape[2], key_states.shape[2]
        if n + m > self._keys.shape[2]:
            self._allocate(self.keys, self.values, max(2 * self._keys.shape[2], n + m + self.spare))
        self._keys[:, :, n : n + m], self._values[:, :, n : n + m] = key_states, value_states
        self.keys, self.values = self._keys[:, :, : n + m], self._values[:, :, : n + m]
        return self.keys, self.values


def run(network, kv, rows: int, growing: bool) -> tuple[float, torch.Tensor]:
    cache = DynamicCache(ddp_cache_data=list(kv), config=network.config)
    if growing:
        cache.layers = [GrowingLayer(k, v) for k, v in kv]
    times = []
    for step in range(STEPS):
        started = time.perf_counter()
        with torch.inference_mode():
            hidden = network.model(
                input_ids=torch.full((rows, 1), 100 + step),
                attention_mask=torch.ones(rows, COLUMNS + step + 1, dtype=torch.long),
                position_ids=torch.full((rows, 1), COLUMNS + step),
                cache=cache,
                use_cache=True,
            ).last_hidden_state
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:]) * 1000, hidden


def main(args) -> None:
    torch.set_num_threads(2)
    network = loading.load_engine_model(dtype="float32").model
    config = network.config
    heads, dim = config.num_key_value_heads, config.hidden_size // config.num_attention_heads
    for rows in (int(r) for r in args.rows.split(",")):
        kv = [
            (torch.randn(rows, heads, COLUMNS, dim), torch.randn(rows, heads, COLUMNS, dim))
            for _ in range(config.num_hidden_layers)
        ]
        times: dict[bool, list[float]] = {False: [], True: []}
        hidden = {}
        for growing in (False, True, False, True):
            ms, hidden[growing] = run(network, kv, rows, growing)
            times[growing].append(ms)
        difference = (hidden[False] - hidden[True]).abs().max().item()
        print(
            f"{rows:4d} rows x {COLUMNS} columns: DynamicCache {min(times[False]):7.1f} ms, grown in place "
            f"{min(times[True]):7.1f} ms ({min(times[True]) / min(times[False]):.2f}x), largest difference {difference:g}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="16,64,128")
    main(parser.parse_args())
