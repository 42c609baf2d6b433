"""One decoding forward of the running batch (R rows, a KV cache of L columns), with glibc's default allocator
settings and with the engine's (`workers/engine/memory.py`): median time of the forward, and the share torch.cat
(growing the cache) takes in a profile of one forward.

    .venv/bin/python experiments/worker-batching/decode_forward.py [--glibc-defaults] [--rows 16,64,128] [--columns 150]
"""

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import DynamicCache

from workers.engine import loading


def forward(network, kv, rows: int, columns: int) -> None:
    """One decoding step: a token per row on a cache of `columns` columns (torch.cat grows it by one)."""
    cache = DynamicCache(ddp_cache_data=list(kv), config=network.config)
    with torch.inference_mode():
        network.model(
            input_ids=torch.randint(0, 1000, (rows, 1)),
            attention_mask=torch.ones(rows, columns + 1, dtype=torch.long),
            position_ids=torch.full((rows, 1), columns),
            cache=cache,
            use_cache=True,
        )


def main(args) -> None:
    torch.set_num_threads(2)
    if args.glibc_defaults:
        loading.keep_freed_memory = lambda: False  # type: ignore[assignment]  # load without the settings
    network = loading.load_engine_model(dtype="float32").model
    config = network.config
    heads, dim = config.num_key_value_heads, config.hidden_size // config.num_attention_heads
    print(f"allocator: {'glibc defaults' if args.glibc_defaults else 'the engine settings'}")
    for rows in (int(r) for r in args.rows.split(",")):
        columns = args.columns
        kv = [
            (torch.randn(rows, heads, columns, dim), torch.randn(rows, heads, columns, dim))
            for _ in range(config.num_hidden_layers)
        ]

        forward(network, kv, rows, columns)
        times = []
        for _ in range(5):
            started = time.perf_counter()
            forward(network, kv, rows, columns)
            times.append(time.perf_counter() - started)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            forward(network, kv, rows, columns)
        events = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
        share = events.get("aten::cat", 0) / sum(events.values())
        print(
            f"{rows:4d} rows x {columns} columns: forward {statistics.median(times) * 1000:7.1f} ms, torch.cat {share:.0%}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glibc-defaults", action="store_true", help="load without the engine's allocator settings")
    parser.add_argument("--rows", default="16,64,128")
    parser.add_argument("--columns", type=int, default=150)
    main(parser.parse_args())
